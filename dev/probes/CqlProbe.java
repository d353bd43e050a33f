// Readiness probe for the local Cassandra node, run by dev/services with Java's
// single-file source launcher against Cassandra's own jars, which include the
// DataStax Java driver 3.x (cassandra-driver-core-*-shaded.jar):
//   java -cp '<cassandra libs>/*' dev/probes/CqlProbe.java HOST:PORT PID TIMEOUT_SECONDS [USER PASSWORD CA_PEM]
// With USER PASSWORD CA_PEM (dev/services' secure mode) it logs in over TLS, trusting CA_PEM only.
// Waits until the CQL port accepts TCP, then until the real query
// `SELECT release_version FROM system.local` answers (native protocol v4, as the
// Rust scylla driver uses). PID 0 = do not watch a process.
// Exit codes: 0 ready (one line on stdout), 2 deadline passed, 3 the process died.
import ch.qos.logback.classic.Level;
import ch.qos.logback.classic.Logger;
import com.datastax.driver.core.Cluster;
import com.datastax.driver.core.ProtocolVersion;
import com.datastax.driver.core.QueryOptions;
import com.datastax.driver.core.RemoteEndpointAwareJdkSSLOptions;
import com.datastax.driver.core.Row;
import com.datastax.driver.core.Session;
import com.datastax.driver.core.SocketOptions;
import java.io.InputStream;
import java.net.InetSocketAddress;
import java.security.KeyStore;
import java.security.cert.Certificate;
import java.security.cert.CertificateFactory;
import javax.net.ssl.SSLContext;
import javax.net.ssl.TrustManagerFactory;
import java.net.Socket;
import java.nio.file.Files;
import java.nio.file.Path;
import org.slf4j.LoggerFactory;

public class CqlProbe {
    public static void main(String[] args) throws Exception {
        ((Logger) LoggerFactory.getLogger(org.slf4j.Logger.ROOT_LOGGER_NAME)).setLevel(Level.OFF);
        String node = args[0];
        long pid = Long.parseLong(args[1]);
        long deadline = System.nanoTime() + (long) (Double.parseDouble(args[2]) * 1e9);
        int colon = node.lastIndexOf(':');
        String host = node.substring(0, colon);
        int port = Integer.parseInt(node.substring(colon + 1));
        String last = "port " + port + " not accepting connections yet";
        boolean warm = false;
        while (true) {
            if (pid > 0 && !alive(pid)) {
                System.err.println("cassandra process " + pid + " exited");
                System.exit(3);
            }
            if (System.nanoTime() > deadline) {
                System.err.println("cassandra not ready before the deadline: " + last);
                System.exit(2);
            }
            boolean open = portOpen(host, port);
            if (open || !warm) { // one early attempt on a closed port loads the driver's classes
                warm = true;
                Cluster cluster = null;
                try {
                    Cluster.Builder builder = Cluster.builder();
                    if (args.length >= 6) {
                        builder.withCredentials(args[3], args[4])
                                .withSSL(RemoteEndpointAwareJdkSSLOptions.builder().withSSLContext(trusting(args[5])).build());
                    }
                    cluster = builder
                            .addContactPoint(host)
                            .withPort(port)
                            .withProtocolVersion(ProtocolVersion.V4)
                            .withoutMetrics()
                            .withoutJMXReporting()
                            .withQueryOptions(new QueryOptions().setMetadataEnabled(false))
                            .withSocketOptions(new SocketOptions().setConnectTimeoutMillis(2000).setReadTimeoutMillis(5000))
                            .build();
                    Session session = cluster.connect();
                    Row row = session.execute("SELECT release_version, data_center FROM system.local").one();
                    System.out.println("release_version " + row.getString("release_version")
                            + ", data centre " + row.getString("data_center"));
                    System.exit(0); // skip cluster.close(): the answer is all we need
                } catch (Exception e) {
                    if (open) last = e.toString();
                    if (cluster != null) cluster.closeAsync();
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

    /** A TLS context that trusts the certificates of one PEM file and nothing else. */
    static SSLContext trusting(String caPem) throws Exception {
        KeyStore roots = KeyStore.getInstance(KeyStore.getDefaultType());
        roots.load(null, null);
        try (InputStream in = Files.newInputStream(Path.of(caPem))) {
            int i = 0;
            for (Certificate cert : CertificateFactory.getInstance("X.509").generateCertificates(in)) {
                roots.setCertificateEntry("ca" + i++, cert);
            }
        }
        TrustManagerFactory trust = TrustManagerFactory.getInstance(TrustManagerFactory.getDefaultAlgorithm());
        trust.init(roots);
        SSLContext context = SSLContext.getInstance("TLS");
        context.init(null, trust.getTrustManagers(), null);
        return context;
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
