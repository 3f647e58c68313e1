//! What can go wrong between us and the Docker engine, each with what to do about it.
#[derive(Debug, thiserror::Error)]
pub enum ContainerError {
    #[error(
        "cannot reach the Docker engine at {host}: {message}. Is Docker installed and running \
         (`sudo systemctl start docker`)? Check DOCKER_HOST, and that this user may use the socket (docker group)"
    )]
    EngineUnreachable { host: String, message: String },
    #[error("image {image} is not in the Docker engine: build it with `make image`, load it, or pass --image NAME")]
    ImageMissing { image: String },
    #[error(
        "the Docker engine cannot give the container GPUs ({message}): install the NVIDIA Container Toolkit \
         (`nvidia-ctk runtime configure --runtime=docker`, then restart Docker), or run on CPU with --gpus none"
    )]
    NoGpuRuntime { message: String },
    #[error(
        "the Docker engine may not raise the container's locked-memory limit ({message}): raise the daemon's own \
         limit (systemd: LimitMEMLOCK=infinity for docker.service, then restart Docker)"
    )]
    UlimitRefused { message: String },
    #[error("Docker engine error while {action}")]
    Engine {
        action: &'static str,
        #[source]
        source: bollard::errors::Error,
    },
    #[error("cannot install the Ctrl-C handler: {0}")]
    SignalHandler(std::io::Error),
    #[error("cannot write {path}: {source}")]
    Write { path: std::path::PathBuf, source: std::io::Error },
}

impl ContainerError {
    pub(crate) fn engine(action: &'static str) -> impl FnOnce(bollard::errors::Error) -> ContainerError {
        move |source| ContainerError::Engine { action, source }
    }
}

/// The address bollard connects to: DOCKER_HOST, or the default local socket.
pub(crate) fn engine_address() -> String {
    std::env::var("DOCKER_HOST").unwrap_or_else(|_| "unix:///var/run/docker.sock".to_string())
}

/// The engine refuses a device request it has no driver for with
/// `could not select device driver "" with capabilities: [[gpu]]`.
pub(crate) fn is_missing_gpu_runtime(error: &bollard::errors::Error) -> bool {
    matches!(error, bollard::errors::Error::DockerResponseServerError { message, .. }
        if message.contains("could not select device driver"))
}

/// runc could not apply a ulimit: `error setting rlimits for ready process: error setting rlimit type 8`.
pub(crate) fn is_refused_rlimit(error: &bollard::errors::Error) -> bool {
    matches!(error, bollard::errors::Error::DockerResponseServerError { message, .. }
        if message.contains("error setting rlimit"))
}

/// HTTP 404 from the engine (no such image / container / path).
pub(crate) fn is_not_found(error: &bollard::errors::Error) -> bool {
    matches!(error, bollard::errors::Error::DockerResponseServerError { status_code: 404, .. })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server_error(status_code: u16, message: &str) -> bollard::errors::Error {
        bollard::errors::Error::DockerResponseServerError { status_code, message: message.to_string() }
    }

    #[test]
    fn recognises_the_engines_gpu_and_not_found_answers() {
        let gpu = server_error(500, r#"could not select device driver "" with capabilities: [[gpu]]"#);
        assert!(is_missing_gpu_runtime(&gpu));
        assert!(!is_not_found(&gpu));
        assert!(is_not_found(&server_error(404, "No such image: nanochat:nope")));
        assert!(!is_missing_gpu_runtime(&server_error(500, "oci runtime error")));
        let rlimit = "runc create failed: error setting rlimits for ready process: error setting rlimit type 8";
        assert!(is_refused_rlimit(&server_error(500, rlimit)));
        assert!(!is_refused_rlimit(&gpu));
    }

    #[test]
    fn messages_say_what_to_do() {
        let missing = ContainerError::ImageMissing { image: "nanochat:nope".into() }.to_string();
        assert!(missing.contains("make image"), "{missing}");
        let gpu = ContainerError::NoGpuRuntime { message: "x".into() }.to_string();
        assert!(gpu.contains("NVIDIA Container Toolkit") && gpu.contains("--gpus none"), "{gpu}");
    }
}
