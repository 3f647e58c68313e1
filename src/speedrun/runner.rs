//! Runs one stage as a child process of this binary (`nanochat [global options] <stage args>`),
//! copying its output to the console and to the stage's log file.
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};

use super::stage::StageSpec;

pub use crate::logging::CAPTURED_ENV;

pub trait StageRunner {
    /// Runs the stage to completion, appending its output to `log`; returns the exit code.
    fn run(&self, stage: &StageSpec, log: &Path) -> std::io::Result<i32>;
}

pub struct ProcessRunner {
    pub executable: PathBuf,
    pub global_args: Vec<String>,
}

impl StageRunner for ProcessRunner {
    fn run(&self, stage: &StageSpec, log: &Path) -> std::io::Result<i32> {
        if let Some(dir) = log.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let mut log_file = OpenOptions::new().create(true).append(true).open(log)?;
        writeln!(
            log_file,
            "==== {} nanochat {} {}",
            crate::logging::now_timestamp(),
            self.global_args.join(" "),
            stage.args.join(" ")
        )?;
        let log_file = Arc::new(Mutex::new(log_file));
        let mut child = Command::new(&self.executable)
            .args(&self.global_args)
            .args(&stage.args)
            .env(CAPTURED_ENV, "1")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()?;
        let out = child.stdout.take().map(|s| tee(s, Arc::clone(&log_file), false));
        let err = child.stderr.take().map(|s| tee(s, Arc::clone(&log_file), true));
        let status = child.wait()?;
        for handle in [out, err].into_iter().flatten() {
            let _ = handle.join();
        }
        Ok(crate::dist::launcher::exit_code(status))
    }
}

fn tee(stream: impl Read + Send + 'static, log: Arc<Mutex<File>>, to_stderr: bool) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let mut reader = BufReader::new(stream);
        let mut line = Vec::new();
        while reader.read_until(b'\n', &mut line).unwrap_or(0) > 0 {
            if to_stderr {
                let _ = std::io::stderr().write_all(&line);
            } else {
                let _ = std::io::stdout().write_all(&line);
            }
            if let Ok(mut f) = log.lock() {
                let _ = f.write_all(&line);
            }
            line.clear();
        }
    })
}
