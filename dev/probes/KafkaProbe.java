// Readiness probe for the local Kafka broker, run by dev/services with Java's
// single-file source launcher against the broker's own jars (kafka-clients):
//   java -cp '<kafka libs>/*' dev/probes/KafkaProbe.java HOST:PORT PID TIMEOUT_SECONDS
// Waits until the port accepts TCP, then until an AdminClient describeCluster +
// listTopics (real metadata requests) succeed. PID 0 = do not watch a process.
// Exit codes: 0 ready (one line on stdout), 2 deadline passed, 3 the process died.
import java.net.InetSocketAddress;
import java.net.Socket;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Collection;
import java.util.Properties;
import java.util.Set;
import java.util.concurrent.TimeUnit;
import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.AdminClientConfig;
import org.apache.kafka.clients.admin.DescribeClusterResult;
import org.apache.kafka.common.Node;
import org.apache.logging.log4j.Level;
import org.apache.logging.log4j.core.config.Configurator;

public class KafkaProbe {
    public static void main(String[] args) throws Exception {
        Configurator.setRootLevel(Level.OFF);
        String bootstrap = args[0];
        long pid = Long.parseLong(args[1]);
        long deadline = System.nanoTime() + (long) (Double.parseDouble(args[2]) * 1e9);
        int colon = bootstrap.lastIndexOf(':');
        String host = bootstrap.substring(0, colon);
        int port = Integer.parseInt(bootstrap.substring(colon + 1));
        String last = "port " + port + " not accepting connections yet";
        Admin admin = null; // created once, early: class loading overlaps the broker's startup
        while (true) {
            if (pid > 0 && !alive(pid)) {
                System.err.println("kafka process " + pid + " exited");
                System.exit(3);
            }
            long left = TimeUnit.NANOSECONDS.toMillis(deadline - System.nanoTime());
            if (left <= 0) {
                System.err.println("kafka not ready before the deadline: " + last);
                System.exit(2);
            }
            if (admin == null) {
                Properties p = new Properties();
                p.put(AdminClientConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
                p.put(AdminClientConfig.CLIENT_ID_CONFIG, "taxiway-readiness-probe");
                p.put(AdminClientConfig.REQUEST_TIMEOUT_MS_CONFIG, "3000");
                p.put(AdminClientConfig.DEFAULT_API_TIMEOUT_MS_CONFIG, "5000");
                p.put(AdminClientConfig.RETRY_BACKOFF_MS_CONFIG, "100");
                p.put(AdminClientConfig.RECONNECT_BACKOFF_MS_CONFIG, "100");
                p.put(AdminClientConfig.RECONNECT_BACKOFF_MAX_MS_CONFIG, "500");
                admin = Admin.create(p);
            }
            if (portOpen(host, port)) {
                try {
                    long wait = Math.max(100, Math.min(left, 5000));
                    DescribeClusterResult d = admin.describeCluster();
                    Collection<Node> nodes = d.nodes().get(wait, TimeUnit.MILLISECONDS);
                    String clusterId = d.clusterId().get(wait, TimeUnit.MILLISECONDS);
                    Node controller = d.controller().get(wait, TimeUnit.MILLISECONDS);
                    Set<String> topics = admin.listTopics().names().get(wait, TimeUnit.MILLISECONDS);
                    if (!nodes.isEmpty() && clusterId != null) {
                        System.out.println("cluster " + clusterId + ", " + nodes.size() + " broker(s), controller "
                                + (controller == null ? "?" : controller.id()) + ", " + topics.size() + " topic(s)");
                        System.exit(0); // skip admin.close(): the answer is all we need
                    }
                    last = "metadata answered without brokers";
                } catch (Exception e) {
                    last = (e.getCause() != null ? e.getCause() : e).toString();
                }
            }
            Thread.sleep(200);
        }
    }

    static boolean portOpen(String host, int port) {
        try (Socket s = new Socket()) {
            s.connect(new InetSocketAddress(host, port), 500);
            return true;
        } catch (Exception e) {
            return false;
        }
    }

    /** Alive and not a zombie (a zombie still has /proc/PID, state Z). */
    static boolean alive(long pid) {
        try {
            String stat = Files.readString(Path.of("/proc/" + pid + "/stat"));
            char state = stat.charAt(stat.lastIndexOf(')') + 2);
            return state != 'Z' && state != 'X';
        } catch (Exception e) {
            return false;
        }
    }
}
