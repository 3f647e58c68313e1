//! Runs one container to completion: inspect the image, create and start the container, stream its
//! output, turn Ctrl-C (SIGINT/SIGTERM) into `docker stop` (a second one into `docker kill`), wait for
//! the exit code, copy report.md out, and remove the container.
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use bollard::container::LogOutput;
use bollard::query_parameters::{
    CreateContainerOptionsBuilder, DownloadFromContainerOptionsBuilder, KillContainerOptionsBuilder,
    LogsOptionsBuilder, RemoveContainerOptionsBuilder, StopContainerOptionsBuilder,
};
use bollard::Docker;
use futures_util::StreamExt;
use tokio::signal::unix::{signal, SignalKind};

use super::container_error::{engine_address, is_missing_gpu_runtime, is_not_found, is_refused_rlimit, ContainerError};
use super::container_spec::{ContainerSpec, CACHE_DIR_IN_CONTAINER};

/// Exit code after a stop we forwarded, as a shell reports a command ended by Ctrl-C.
const INTERRUPTED_EXIT_CODE: i64 = 130;

#[derive(Clone, Debug)]
pub struct RunOptions {
    /// The container to run; `image_id` is filled in from the engine.
    pub spec: ContainerSpec,
    /// Where report/report.md of the cache is copied after the run (nothing is copied if it does not exist).
    pub report_out: Option<PathBuf>,
    /// Keep the stopped container (for `docker logs` / `docker cp`) instead of removing it.
    pub keep: bool,
    /// Seconds `docker stop` waits after SIGTERM before SIGKILL.
    pub stop_timeout_s: i32,
    pub name: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ContainerOutcome {
    pub container_id: String,
    pub exit_code: i64,
    /// The run was stopped by a forwarded Ctrl-C/SIGTERM.
    pub interrupted: bool,
    /// Where report.md was copied, when the container had one.
    pub report: Option<PathBuf>,
}

pub async fn run_container(mut options: RunOptions) -> Result<ContainerOutcome, ContainerError> {
    let docker = connect().await?;
    options.spec.image_id = docker
        .inspect_image(&options.spec.image)
        .await
        .map_err(|e| match is_not_found(&e) {
            true => ContainerError::ImageMissing { image: options.spec.image.clone() },
            false => ContainerError::Engine { action: "inspecting the image", source: e },
        })?
        .id
        .unwrap_or_else(|| options.spec.image.clone());
    let create = CreateContainerOptionsBuilder::default();
    let create = match &options.name {
        Some(name) => create.name(name),
        None => create,
    };
    let id = docker
        .create_container(Some(create.build()), options.spec.create_body())
        .await
        .map_err(ContainerError::engine("creating the container"))?
        .id;
    let outcome = run_created(&docker, &id, &options).await;
    if !options.keep {
        let remove = RemoveContainerOptionsBuilder::default().force(true).v(false).build();
        if let Err(e) = docker.remove_container(&id, Some(remove)).await {
            log::warn!("could not remove container {id}: {e}");
        }
    }
    outcome
}

async fn connect() -> Result<Docker, ContainerError> {
    let unreachable = |e: bollard::errors::Error| ContainerError::EngineUnreachable {
        host: engine_address(),
        message: e.to_string(),
    };
    let docker = Docker::connect_with_defaults().map_err(unreachable)?;
    docker.ping().await.map_err(unreachable)?;
    // The engine may speak an older API than bollard's default (Debian's 20.10 engine: 1.41).
    docker.negotiate_version().await.map_err(unreachable)
}

async fn run_created(docker: &Docker, id: &str, options: &RunOptions) -> Result<ContainerOutcome, ContainerError> {
    docker.start_container(id, None).await.map_err(|e| {
        if is_missing_gpu_runtime(&e) {
            ContainerError::NoGpuRuntime { message: e.to_string() }
        } else if is_refused_rlimit(&e) {
            ContainerError::UlimitRefused { message: e.to_string() }
        } else {
            ContainerError::Engine { action: "starting the container", source: e }
        }
    })?;
    let logs = tokio::spawn(stream_logs(docker.clone(), id.to_string()));
    let (exit_code, interrupted) = wait_forwarding_signals(docker, id, options.stop_timeout_s).await?;
    // The log stream ends with the container; give it a moment to drain.
    let _ = tokio::time::timeout(Duration::from_secs(10), logs).await;
    let report = match &options.report_out {
        Some(path) => copy_report_out(docker, id, path).await?,
        None => None,
    };
    let exit_code = if interrupted && exit_code != 0 { INTERRUPTED_EXIT_CODE } else { exit_code };
    Ok(ContainerOutcome { container_id: id.to_string(), exit_code, interrupted, report })
}

async fn stream_logs(docker: Docker, id: String) {
    let options = LogsOptionsBuilder::default().follow(true).stdout(true).stderr(true).build();
    let mut stream = docker.logs(&id, Some(options));
    while let Some(item) = stream.next().await {
        // A closed stdout (e.g. piped into `head`) must not stop the run itself.
        let _ = match item {
            Ok(LogOutput::StdErr { message }) => std::io::stderr().write_all(&message),
            Ok(LogOutput::StdOut { message }) | Ok(LogOutput::Console { message }) => {
                let mut out = std::io::stdout();
                out.write_all(&message).and_then(|_| out.flush())
            }
            Ok(LogOutput::StdIn { .. }) => Ok(()),
            Err(e) => {
                log::warn!("log stream of container {id} ended: {e}");
                break;
            }
        };
    }
}

/// Waits for the container to exit; the first SIGINT/SIGTERM stops it (SIGTERM to its process group
/// through tini, SIGKILL after the timeout), a second kills it at once.
async fn wait_forwarding_signals(
    docker: &Docker,
    id: &str,
    stop_timeout_s: i32,
) -> Result<(i64, bool), ContainerError> {
    let mut sigint = signal(SignalKind::interrupt()).map_err(ContainerError::SignalHandler)?;
    let mut sigterm = signal(SignalKind::terminate()).map_err(ContainerError::SignalHandler)?;
    let mut wait = docker.wait_container(id, None);
    let mut stop_requests = 0;
    loop {
        tokio::select! {
            result = wait.next() => {
                let exit_code = match result {
                    Some(Ok(response)) => response.status_code,
                    Some(Err(bollard::errors::Error::DockerContainerWaitError { code, .. })) => code,
                    Some(Err(e)) => return Err(ContainerError::Engine { action: "waiting for the container", source: e }),
                    None => return Err(ContainerError::Engine {
                        action: "waiting for the container",
                        source: bollard::errors::Error::DockerStreamError { error: "wait stream ended early".into() },
                    }),
                };
                return Ok((exit_code, stop_requests > 0));
            }
            _ = sigint.recv() => {}
            _ = sigterm.recv() => {}
        }
        // Only a signal gets here.
        forward_stop(docker, id, stop_requests == 0, stop_timeout_s);
        stop_requests += 1;
    }
}

fn forward_stop(docker: &Docker, id: &str, first: bool, stop_timeout_s: i32) {
    let (docker, id) = (docker.clone(), id.to_string());
    if first {
        eprintln!("\nstopping the container ({stop_timeout_s} s grace; Ctrl-C again to kill it)");
        tokio::spawn(async move {
            let options = StopContainerOptionsBuilder::default().t(stop_timeout_s).build();
            if let Err(e) = docker.stop_container(&id, Some(options)).await {
                log::warn!("docker stop {id}: {e}");
            }
        });
    } else {
        eprintln!("\nkilling the container");
        tokio::spawn(async move {
            let options = KillContainerOptionsBuilder::default().signal("SIGKILL").build();
            if let Err(e) = docker.kill_container(&id, Some(options)).await {
                log::warn!("docker kill {id}: {e}");
            }
        });
    }
}

/// Copies report/report.md out of the (stopped) container to `destination`, and the plots it links
/// (report/*.svg) next to it; Ok(None) when it has no report.
async fn copy_report_out(docker: &Docker, id: &str, destination: &Path) -> Result<Option<PathBuf>, ContainerError> {
    let path = format!("{CACHE_DIR_IN_CONTAINER}/report");
    let options = DownloadFromContainerOptionsBuilder::default().path(&path).build();
    let mut stream = docker.download_from_container(id, Some(options));
    let mut archive = Vec::new();
    while let Some(chunk) = stream.next().await {
        match chunk {
            Ok(bytes) => archive.extend_from_slice(&bytes),
            Err(e) if is_not_found(&e) => return Ok(None),
            Err(e) => return Err(ContainerError::Engine { action: "copying the report out", source: e }),
        }
    }
    let files = files_from_tar(&archive);
    let Some((_, report)) = files.iter().find(|(name, _)| name == "report.md") else {
        return Ok(None);
    };
    let write = |path: &Path, bytes: &[u8]| {
        crate::fsutil::write_atomic(path, bytes)
            .map_err(|source| ContainerError::Write { path: path.to_path_buf(), source })
    };
    let dir = destination.parent().unwrap_or(Path::new(""));
    for (name, bytes) in files.iter().filter(|(name, _)| name.ends_with(".svg")) {
        write(&dir.join(name), bytes)?;
    }
    write(destination, report)?;
    Ok(Some(destination.to_path_buf()))
}

/// The regular files of a tar archive (the engine's archive endpoint format) by file name.
fn files_from_tar(archive: &[u8]) -> Vec<(String, Vec<u8>)> {
    let mut files = Vec::new();
    let mut tar = tar::Archive::new(archive);
    let Ok(entries) = tar.entries() else { return files };
    for mut entry in entries.flatten() {
        if !entry.header().entry_type().is_file() {
            continue;
        }
        let Some(name) = entry.path().ok().and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned())) else {
            continue;
        };
        let mut bytes = Vec::new();
        if entry.read_to_end(&mut bytes).is_ok() {
            files.push((name, bytes));
        }
    }
    files
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_report_and_its_plots_in_an_engine_archive() {
        let mut builder = tar::Builder::new(Vec::new());
        let entries = [
            ("report/other.txt", &b"x"[..]),
            ("report/report.md", &b"# nanochat training report\n"[..]),
            ("report/base_loss.svg", &b"<svg/>"[..]),
        ];
        for (name, body) in entries {
            let mut header = tar::Header::new_gnu();
            header.set_size(body.len() as u64);
            header.set_mode(0o644);
            header.set_cksum();
            builder.append_data(&mut header, name, body).unwrap();
        }
        let archive = builder.into_inner().unwrap();
        let files = files_from_tar(&archive);
        let names: Vec<&str> = files.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["other.txt", "report.md", "base_loss.svg"]);
        assert_eq!(files[1].1, b"# nanochat training report\n");
        assert!(files_from_tar(b"not a tar archive").is_empty());
    }
}
