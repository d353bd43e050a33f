//! `api hash-password`: prints the argon2id PHC string of a password, for the auth file's
//! `password_hash`. From a terminal it asks twice without echo; otherwise it reads one line of
//! stdin, so scripts can pipe a password in without it showing in the process list.

use std::io::{BufRead, IsTerminal, Write};

use crate::error::Error;
use crate::password;

fn io(context: &str) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |source| Error::Io {
        context: context.to_owned(),
        source,
    }
}

/// The command as the binary runs it: terminal or stdin in, the PHC string on stdout.
pub fn run() -> Result<(), Error> {
    let password = if std::io::stdin().is_terminal() {
        let first = rpassword::prompt_password("Password: ").map_err(io("reading the password"))?;
        let again = rpassword::prompt_password("Again: ").map_err(io("reading the password"))?;
        if first != again {
            return Err(Error::Password("the two passwords differ".to_owned()));
        }
        first
    } else {
        read_line(std::io::stdin().lock())?
    };
    let line = hash_line(&password)?;
    std::io::stdout()
        .write_all(line.as_bytes())
        .map_err(io("writing the hash"))
}

/// The password on the first line of `input`, without its line ending.
pub fn read_line(mut input: impl BufRead) -> Result<String, Error> {
    let mut line = String::new();
    input
        .read_line(&mut line)
        .map_err(io("reading the password from stdin"))?;
    let password = line.strip_suffix('\n').unwrap_or(&line);
    Ok(password.strip_suffix('\r').unwrap_or(password).to_owned())
}

/// What the command prints for `password`: its PHC string and a newline.
pub fn hash_line(password: &str) -> Result<String, Error> {
    if password.is_empty() {
        return Err(Error::Password("empty password".to_owned()));
    }
    let hash = password::hash(password.as_bytes()).map_err(|e| Error::Password(e.to_string()))?;
    Ok(format!("{hash}\n"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_is_read_without_its_ending_and_empty_is_refused() {
        assert_eq!(read_line(&b"s3cret pw\r\nnext\n"[..]).unwrap(), "s3cret pw");
        assert_eq!(read_line(&b"no newline"[..]).unwrap(), "no newline");
        assert!(hash_line(&read_line(&b"\n"[..]).unwrap()).is_err());
        let line = hash_line("pw").unwrap();
        assert!(
            line.starts_with("$argon2id$") && line.ends_with('\n'),
            "{line}"
        );
    }
}
