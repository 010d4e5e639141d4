//! A squatter: another local user (uid 65534) who got to the daemon's socket first and answers
//! like a daemon would, recording every byte a client sends it. Issue 12, finding 2: a client
//! must notice it is not ours before it sends anything, so the record must stay empty.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::other_user::{as_nobody, assert_ran_as_nobody, nobody_dir};

/// Accepts on SOCKET; records what arrives in OUT/bytes and each connection in OUT/connections;
/// answers every chunk with plausible replies, to lure a client into saying more.
const SQUATTER: &str = r#"
import os, socket, sys
out, path, make_dir = sys.argv[1], sys.argv[2], sys.argv[3] == "1"
if make_dir:
    os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
s = socket.socket(socket.AF_UNIX)
s.bind(path)
os.chmod(path, 0o600)
s.listen(16)
open(os.path.join(out, "ready"), "w").write("1")
def reply(i, result):
    body = ('{"jsonrpc":"2.0","id":%d,"result":%s}' % (i, result)).encode()
    return b"Content-Length: %d\r\n\r\n" % len(body) + body
while True:
    c, _ = s.accept()
    open(os.path.join(out, "connections"), "a").write("1\n")
    c.settimeout(3)
    try:
        while True:
            b = c.recv(65536)
            if not b:
                break
            with open(os.path.join(out, "bytes"), "ab") as f:
                f.write(b)
            for i in range(1, 6):
                c.sendall(reply(i, '{"capabilities":{},"state":"ready","baseUrl":"http://127.0.0.1:9"}'))
    except Exception:
        pass
    c.close()
"#;

pub struct Squatter {
    child: std::process::Child,
    out: PathBuf,
}

impl Squatter {
    /// Start the squatter as uid 65534 on `socket` (creating its directory when `make_dir`),
    /// with `caps` ambient capabilities; wait until it listens, and check who it runs as.
    pub async fn start(scratch: &Path, socket: &Path, make_dir: bool, caps: &[&str]) -> Squatter {
        let out = nobody_dir(scratch, "squatter");
        let marker = out.join("uid");
        let child = as_nobody(
            caps,
            &marker,
            &["/usr/bin/python3", "-c", SQUATTER, out.to_str().unwrap()],
        )
        .arg(socket)
        .arg(if make_dir { "1" } else { "0" })
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("setpriv runs (util-linux)");
        let mut squatter = Squatter { child, out };
        for _ in 0..100 {
            if squatter.out.join("ready").exists() {
                break;
            }
            if let Ok(Some(status)) = squatter.child.try_wait() {
                let mut err = String::new();
                use std::io::Read;
                let _ = squatter
                    .child
                    .stderr
                    .take()
                    .unwrap()
                    .read_to_string(&mut err);
                panic!("the squatter exited ({status}): {err}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(squatter.out.join("ready").exists(), "the squatter listens");
        assert_ran_as_nobody(&marker, "the squatter");
        squatter
    }

    /// Every byte any client sent it.
    pub fn received(&self) -> Vec<u8> {
        std::fs::read(self.out.join("bytes")).unwrap_or_default()
    }

    /// How many connections it accepted.
    pub fn connections(&self) -> usize {
        std::fs::read_to_string(self.out.join("connections"))
            .unwrap_or_default()
            .lines()
            .count()
    }
}

impl Drop for Squatter {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
