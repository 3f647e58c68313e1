//! How a run's verdict is made and read back. The runner (a Python script, the interpreter's
//! `-c`) reads the run's nonce from descriptor 4 and closes it before the program starts, execs the
//! program like the reference's `exec(program, {})`, and writes its verdict to descriptor 3 as
//! records that each begin with the nonce: "passed" only after the program returned and no other
//! process of the run is left; "failed", written before anything of the program's (an exception's
//! `__str__`) runs again, then the exception's class and message; "left" for processes left
//! behind. The parent takes the first record with the nonce as the verdict, so bytes the program
//! writes to descriptor 3 (or to any other) without the nonce count for nothing, and a program that
//! ends the interpreter before its check returns has no verdict: it failed.
use std::io::Read;

/// The verdict descriptor (written by the runner) and the nonce descriptor (read once, then closed).
pub(super) const VERDICT_FD: i32 = 3;
pub(super) const NONCE_FD: i32 = 4;

/// Records longer than this are cut, so that each is one atomic pipe write (below PIPE_BUF).
const MAX_RECORD: usize = 3000;

/// The runner. Everything it calls once the program has run is bound before (default arguments),
/// so that patched modules or builtins do not change what it does; trace and profile hooks the
/// program set are removed before it reports. Its argument says whether the run has a PID
/// namespace of its own (every other process is the program's) or is a plain child (the program's
/// processes are those of its session).
pub(super) const RUNNER: &str = r#"import os, sys, time, traceback
def main(read=os.read, write=os.write, close=os.close, listdir=os.listdir, waitpid=os.waitpid,
         nohang=os.WNOHANG, open_fd=os.open, rdonly=os.O_RDONLY, getpid=os.getpid, sleep=time.sleep,
         settrace=sys.settrace, setprofile=sys.setprofile, exit=os._exit, print_exc=traceback.print_exc,
         isolated=sys.argv[1] == "isolated", bytes_=bytes, int_=int, len_=len, BaseException_=BaseException):
    nonce = read(4, 64)
    close(4)

    def report(payload):
        write(3, nonce + payload[:MAX_RECORD])

    def others():
        me = getpid()
        left = []
        for _ in range(50):
            try:
                while waitpid(-1, nohang)[0] > 0:
                    pass
            except BaseException_:
                pass
            left = []
            for name in listdir("/proc"):
                if not name.isdigit() or int_(name) == me:
                    continue
                try:
                    fd = open_fd("/proc/" + name + "/stat", rdonly)
                    try:
                        fields = read(fd, 1024).rsplit(b")", 1)[1].split()
                    finally:
                        close(fd)
                except BaseException_:
                    continue
                if fields[0] not in (b"Z", b"X") and (isolated or int_(fields[3]) == me):
                    left.append(name)
            if not left:
                return False
            sleep(0.002)
        return True

    try:
        with open("program.py", encoding="utf-8") as source:
            code = compile(source.read(), "program.py", "exec")
        exec(code, {})
    except BaseException as error:
        report(b"failed")
        settrace(None)
        setprofile(None)
        try:
            print_exc()
            detail = type(error).__name__ + "\n" + str(error)
        except BaseException_:
            detail = "\n<the exception could not be described>"
        report(detail.encode("utf-8", "replace"))
    else:
        settrace(None)
        setprofile(None)
        report(b"left" if others() else b"passed")
    for stream in (sys.__stdout__, sys.__stderr__, sys.stdout, sys.stderr):
        try:
            stream.flush()
        except BaseException_:
            pass
    exit(0)
main()
"#;

/// The runner with its record size filled in.
pub(super) fn runner() -> String {
    RUNNER.replace("MAX_RECORD", &MAX_RECORD.to_string())
}

/// A fresh nonce: 32 hex digits from the kernel's random source.
pub(super) fn nonce() -> std::io::Result<String> {
    let mut bytes = [0u8; 16];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut bytes)?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// What the runner reported.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Report {
    Passed,
    /// The exception's class name and message.
    Failed {
        exception: String,
        message: String,
    },
    LeftProcess,
    /// No record with the nonce: the interpreter ended before the runner reported.
    Missing,
}

/// The first record with `nonce` in what descriptor 3 carried (and the details record after it).
pub(super) fn read_report(data: &[u8], nonce: &str) -> Report {
    let text = String::from_utf8_lossy(data);
    let mut records = text.split(nonce).skip(1);
    match records.next() {
        Some("passed") => Report::Passed,
        Some("left") => Report::LeftProcess,
        Some("failed") => {
            let detail = records.next().unwrap_or("");
            let (exception, message) = detail.split_once('\n').unwrap_or((detail, ""));
            Report::Failed { exception: exception.to_string(), message: message.to_string() }
        }
        _ => Report::Missing,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_first_record_with_the_nonce_counts() {
        let n = "0123456789abcdef0123456789abcdef";
        assert_eq!(read_report(format!("{n}passed").as_bytes(), n), Report::Passed);
        assert_eq!(read_report(format!("junk passed{n}left").as_bytes(), n), Report::LeftProcess);
        assert_eq!(
            read_report(format!("passed{n}failed{n}ValueError\nbad\nvalue{n}passed").as_bytes(), n),
            Report::Failed { exception: "ValueError".into(), message: "bad\nvalue".into() }
        );
        // Without the nonce, whatever was written is no verdict.
        assert_eq!(read_report(b"passed", n), Report::Missing);
        assert_eq!(read_report(format!("{}passed", &n[..31]).as_bytes(), n), Report::Missing);
        assert_eq!(read_report(b"", n), Report::Missing);
    }

    #[test]
    fn nonces_are_fresh_hex() {
        let (a, b) = (nonce().unwrap(), nonce().unwrap());
        assert!(a.len() == 32 && a.chars().all(|c| c.is_ascii_hexdigit()), "{a}");
        assert_ne!(a, b);
    }
}
