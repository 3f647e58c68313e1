//! What `nanochat container run` asks the engine for, as one plain value: image, command, GPUs, the
//! cache volume, shared memory and ulimits. `create_body` turns it into the Engine API's request, so
//! the settings are testable without a Docker engine.
use std::collections::HashMap;
use std::path::PathBuf;

use bollard::models::{ContainerCreateBody, HostConfig, Mount, MountType, ResourcesUlimits};

use super::gpu_selection::GpuSelection;

/// Where the image keeps every artifact (its NANOCHAT_BASE_DIR and VOLUME, docker/Dockerfile).
pub const CACHE_DIR_IN_CONTAINER: &str = "/root/.cache/nanochat";
/// The image's CA bundle (Debian's ca-certificates), replaced by `--ca-certs`.
pub const CA_BUNDLE_IN_CONTAINER: &str = "/etc/ssl/certs/ca-certificates.crt";
/// Label on every container this launcher starts (to find leftovers: `docker ps -af label=...`).
pub const LAUNCHER_LABEL: &str = "org.nanochat.launcher";

/// The cache: a named Docker volume, or a host directory bind-mounted in its place.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CacheVolume {
    Named(String),
    HostDir(PathBuf),
}

impl CacheVolume {
    /// A value with a slash (or starting with `.` or `~`) is a host directory, anything else a volume
    /// name, as `docker run -v` reads it.
    pub fn parse(text: &str) -> CacheVolume {
        if text.contains('/') || text.starts_with('.') || text.starts_with('~') {
            CacheVolume::HostDir(PathBuf::from(text))
        } else {
            CacheVolume::Named(text.to_string())
        }
    }

    fn mount(&self) -> Mount {
        let (source, typ) = match self {
            CacheVolume::Named(name) => (name.clone(), MountType::VOLUME),
            CacheVolume::HostDir(dir) => (dir.display().to_string(), MountType::BIND),
        };
        Mount {
            target: Some(CACHE_DIR_IN_CONTAINER.to_string()),
            source: Some(source),
            typ: Some(typ),
            ..Default::default()
        }
    }
}

#[derive(Clone, Debug)]
pub struct ContainerSpec {
    /// Image reference as given (`nanochat:latest`).
    pub image: String,
    /// The image's content id, recorded in the container's environment for the report.
    pub image_id: String,
    /// Arguments after the entrypoint (`nanochat`): a stage or `speedrun` and its flags.
    pub args: Vec<String>,
    pub gpus: GpuSelection,
    pub cache: CacheVolume,
    /// /dev/shm in bytes: NCCL and the data loader use shared memory; Docker's default 64 MiB is too small.
    pub shm_size: i64,
    /// Extra KEY=VALUE environment.
    pub env: Vec<String>,
    /// A host CA bundle mounted over the image's, for networks whose HTTPS proxy has its own CA.
    pub ca_certs: Option<PathBuf>,
}

/// NVIDIA's recommended limits for GPU containers: unlimited locked memory (pinned host buffers, NCCL
/// over RDMA) and a 64 MiB stack. CPU runs keep the engine's defaults: nothing there pins memory, and
/// engines without CAP_SYS_RESOURCE refuse to raise memlock.
const GPU_ULIMITS: [(&str, i64); 2] = [("memlock", -1), ("stack", 64 << 20)];

impl ContainerSpec {
    pub fn create_body(&self) -> ContainerCreateBody {
        let mut env = vec![format!("NANOCHAT_CONTAINER_IMAGE={}@{}", self.image, self.image_id)];
        env.extend(self.env.iter().cloned());
        let ulimits = (self.gpus != GpuSelection::None).then(|| {
            GPU_ULIMITS
                .iter()
                .map(|(name, limit)| ResourcesUlimits {
                    name: Some(name.to_string()),
                    soft: Some(*limit),
                    hard: Some(*limit),
                })
                .collect()
        });
        ContainerCreateBody {
            image: Some(self.image_id.clone()),
            cmd: Some(self.args.clone()),
            env: Some(env),
            attach_stdout: Some(true),
            attach_stderr: Some(true),
            labels: Some(HashMap::from([(LAUNCHER_LABEL.to_string(), "container-run".to_string())])),
            host_config: Some(HostConfig {
                device_requests: self.gpus.device_requests(),
                mounts: Some(self.mounts()),
                shm_size: Some(self.shm_size),
                ulimits,
                ..Default::default()
            }),
            ..Default::default()
        }
    }
}

impl ContainerSpec {
    fn mounts(&self) -> Vec<Mount> {
        let mut mounts = vec![self.cache.mount()];
        if let Some(bundle) = &self.ca_certs {
            mounts.push(Mount {
                target: Some(CA_BUNDLE_IN_CONTAINER.to_string()),
                source: Some(bundle.display().to_string()),
                typ: Some(MountType::BIND),
                read_only: Some(true),
                ..Default::default()
            });
        }
        mounts
    }
}

/// A size that [`parse_byte_size`] cannot read.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum ByteSizeError {
    #[error("`{0}` is not a size: use e.g. 16g, 512m or a number of bytes")]
    NotASize(String),
    #[error("`{0}` is out of range")]
    OutOfRange(String),
}

/// `16g`, `512m`, `64k` or a plain byte count (binary units, as `docker run --shm-size`).
pub fn parse_byte_size(text: &str) -> Result<i64, ByteSizeError> {
    let lower = text.trim().to_ascii_lowercase();
    let digits_end = lower.find(|c: char| !c.is_ascii_digit()).unwrap_or(lower.len());
    let (number, unit) = lower.split_at(digits_end);
    let shift = match unit.trim_end_matches('b') {
        "" => 0,
        "k" => 10,
        "m" => 20,
        "g" => 30,
        _ => return Err(ByteSizeError::NotASize(text.to_string())),
    };
    let value: i64 = number.parse().map_err(|_| ByteSizeError::NotASize(text.to_string()))?;
    value.checked_mul(1 << shift).filter(|v| *v > 0).ok_or_else(|| ByteSizeError::OutOfRange(text.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> ContainerSpec {
        ContainerSpec {
            image: "nanochat:latest".into(),
            image_id: "sha256:abc".into(),
            args: vec!["speedrun".into(), "--preset".into(), "smoke".into()],
            gpus: GpuSelection::All,
            cache: CacheVolume::parse("nanochat-cache"),
            shm_size: 16 << 30,
            env: vec!["A=1".into()],
            ca_certs: None,
        }
    }

    #[test]
    fn create_body_carries_gpus_cache_shm_ulimits_and_the_image_id() {
        let body = spec().create_body();
        assert_eq!(body.image.as_deref(), Some("sha256:abc"), "pinned to the inspected id, not the moving tag");
        assert_eq!(body.cmd, Some(vec!["speedrun".to_string(), "--preset".into(), "smoke".into()]));
        let env = body.env.unwrap();
        assert_eq!(env, vec!["NANOCHAT_CONTAINER_IMAGE=nanochat:latest@sha256:abc".to_string(), "A=1".into()]);
        let host = body.host_config.unwrap();
        assert_eq!(host.shm_size, Some(16 << 30));
        assert_eq!(host.device_requests.unwrap()[0].count, Some(-1));
        let mounts = host.mounts.unwrap();
        assert_eq!(mounts.len(), 1, "only the cache without --ca-certs");
        let mount = &mounts[0];
        assert_eq!(mount.typ, Some(MountType::VOLUME));
        assert_eq!(mount.source.as_deref(), Some("nanochat-cache"));
        assert_eq!(mount.target.as_deref(), Some(CACHE_DIR_IN_CONTAINER));
        let ulimits = host.ulimits.unwrap();
        assert_eq!(ulimits[0].name.as_deref(), Some("memlock"));
        assert_eq!(ulimits[0].soft, Some(-1));
        assert_eq!(ulimits[1].hard, Some(64 << 20));
        assert_eq!(body.labels.unwrap()[LAUNCHER_LABEL], "container-run");
    }

    #[test]
    fn cpu_runs_request_no_devices_and_paths_are_bind_mounts() {
        let mut cpu = spec();
        cpu.gpus = GpuSelection::None;
        cpu.cache = CacheVolume::parse("/srv/nanochat");
        cpu.ca_certs = Some("/etc/ssl/certs/ca-certificates.crt".into());
        let host = cpu.create_body().host_config.unwrap();
        assert!(host.device_requests.is_none());
        assert!(host.ulimits.is_none(), "CPU runs keep the engine's limits");
        let mounts = host.mounts.unwrap();
        assert_eq!(mounts[0].typ, Some(MountType::BIND));
        assert_eq!(mounts[0].source.as_deref(), Some("/srv/nanochat"));
        let ca = &mounts[1];
        assert_eq!(ca.target.as_deref(), Some(CA_BUNDLE_IN_CONTAINER));
        assert_eq!((ca.typ, ca.read_only), (Some(MountType::BIND), Some(true)));
        assert_eq!(CacheVolume::parse("./cache"), CacheVolume::HostDir("./cache".into()));
    }

    #[test]
    fn byte_sizes_use_binary_units() {
        assert_eq!(parse_byte_size("16g"), Ok(16 << 30));
        assert_eq!(parse_byte_size("512M"), Ok(512 << 20));
        assert_eq!(parse_byte_size("64kb"), Ok(64 << 10));
        assert_eq!(parse_byte_size("1000"), Ok(1000));
        assert!(parse_byte_size("lots").is_err());
        assert!(parse_byte_size("0").is_err());
        assert!(parse_byte_size("9999999999999g").is_err());
    }
}
