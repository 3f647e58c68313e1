//! Who this process is in a distributed run, read from the environment the way torchrun sets it
//! (RANK, LOCAL_RANK, WORLD_SIZE, LOCAL_WORLD_SIZE, MASTER_ADDR, MASTER_PORT), or from SLURM (srun)
//! or a Kubernetes PyTorchJob (PET_* variables) when no launcher started us.
use std::collections::HashMap;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DistContext {
    pub rank: usize,
    pub local_rank: usize,
    pub world_size: usize,
    pub local_world_size: usize,
    pub master_addr: String,
    pub master_port: u16,
}

pub const DEFAULT_MASTER_PORT: u16 = 29500;

/// A distributed environment that cannot be right.
#[derive(Debug, thiserror::Error)]
pub enum DistEnvError {
    #[error("environment variable {name}={value} is not a number")]
    NotANumber { name: String, value: String },
    #[error("MASTER_PORT={0} is not a port number")]
    BadPort(String),
    #[error("inconsistent distributed environment: rank {rank} of {world}, local rank {local_rank} of {local_world}")]
    Inconsistent { rank: usize, world: usize, local_rank: usize, local_world: usize },
}

impl DistContext {
    /// A single process (no distribution).
    pub fn single() -> Self {
        DistContext {
            rank: 0,
            local_rank: 0,
            world_size: 1,
            local_world_size: 1,
            master_addr: "127.0.0.1".into(),
            master_port: DEFAULT_MASTER_PORT,
        }
    }

    pub fn is_distributed(&self) -> bool {
        self.world_size > 1
    }

    pub fn is_master(&self) -> bool {
        self.rank == 0
    }

    pub fn from_process_env() -> Result<Self, DistEnvError> {
        Self::from_vars(&std::env::vars().collect())
    }

    /// torchrun-style variables first, then SLURM, then PET_* (PyTorchJob); none means one process.
    pub fn from_vars(vars: &HashMap<String, String>) -> Result<Self, DistEnvError> {
        let get = |k: &str| vars.get(k).map(String::as_str).filter(|v| !v.is_empty());
        let num = |k: &str| -> Result<Option<usize>, DistEnvError> {
            let bad = |v: &str| DistEnvError::NotANumber { name: k.to_string(), value: v.to_string() };
            get(k).map(|v| v.parse::<usize>().map_err(|_| bad(v))).transpose()
        };
        let master_addr = get("MASTER_ADDR")
            .or(get("PET_MASTER_ADDR"))
            .or(get("SLURM_LAUNCH_NODE_IPADDR"))
            .unwrap_or("127.0.0.1")
            .to_string();
        let master_port = match get("MASTER_PORT").or(get("PET_MASTER_PORT")) {
            Some(p) => p.parse().map_err(|_| DistEnvError::BadPort(p.to_string()))?,
            None => DEFAULT_MASTER_PORT,
        };
        let (rank, world, local_rank, local_world) =
            if let (Some(rank), Some(world)) = (num("RANK")?, num("WORLD_SIZE")?) {
                (rank, world, num("LOCAL_RANK")?.unwrap_or(rank), num("LOCAL_WORLD_SIZE")?.unwrap_or(world))
            } else if let (Some(rank), Some(world)) = (num("SLURM_PROCID")?, num("SLURM_NTASKS")?) {
                let local_world =
                    get("SLURM_NTASKS_PER_NODE").and_then(|v| v.split('(').next()?.parse().ok()).unwrap_or(world);
                (rank, world, num("SLURM_LOCALID")?.unwrap_or(rank), local_world)
            } else {
                return Ok(DistContext { master_addr, master_port, ..Self::single() });
            };
        if rank >= world || local_rank >= local_world.max(1) {
            return Err(DistEnvError::Inconsistent { rank, world, local_rank, local_world });
        }
        Ok(DistContext { rank, local_rank, world_size: world, local_world_size: local_world, master_addr, master_port })
    }

    /// The variables a launcher gives a worker (torchrun's set).
    pub fn to_vars(&self) -> Vec<(String, String)> {
        vec![
            ("RANK".into(), self.rank.to_string()),
            ("LOCAL_RANK".into(), self.local_rank.to_string()),
            ("WORLD_SIZE".into(), self.world_size.to_string()),
            ("LOCAL_WORLD_SIZE".into(), self.local_world_size.to_string()),
            ("MASTER_ADDR".into(), self.master_addr.clone()),
            ("MASTER_PORT".into(), self.master_port.to_string()),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn torchrun_slurm_pytorchjob_and_nothing() {
        let t = DistContext::from_vars(&vars(&[
            ("RANK", "3"),
            ("WORLD_SIZE", "8"),
            ("LOCAL_RANK", "3"),
            ("LOCAL_WORLD_SIZE", "4"),
            ("MASTER_ADDR", "10.0.0.1"),
            ("MASTER_PORT", "1234"),
        ]))
        .unwrap();
        assert_eq!((t.rank, t.world_size, t.local_rank, t.local_world_size, t.master_port), (3, 8, 3, 4, 1234));
        let s = DistContext::from_vars(&vars(&[
            ("SLURM_PROCID", "5"),
            ("SLURM_NTASKS", "16"),
            ("SLURM_LOCALID", "1"),
            ("SLURM_NTASKS_PER_NODE", "8(x2)"),
            ("MASTER_ADDR", "node1"),
        ]))
        .unwrap();
        assert_eq!(
            (s.rank, s.world_size, s.local_rank, s.local_world_size, s.master_addr.as_str()),
            (5, 16, 1, 8, "node1")
        );
        let k = DistContext::from_vars(&vars(&[
            ("RANK", "1"),
            ("WORLD_SIZE", "2"),
            ("PET_MASTER_ADDR", "job-master-0"),
            ("PET_MASTER_PORT", "23456"),
        ]))
        .unwrap();
        assert_eq!((k.master_addr.as_str(), k.master_port), ("job-master-0", 23456));
        assert_eq!(DistContext::from_vars(&HashMap::new()).unwrap(), DistContext::single());
        let round = DistContext::from_vars(&t.to_vars().into_iter().collect()).unwrap();
        assert_eq!(round, t);
    }

    #[test]
    fn bad_values_are_named() {
        let error = |pairs: &[(&str, &str)]| DistContext::from_vars(&vars(pairs)).unwrap_err().to_string();
        assert!(error(&[("RANK", "x"), ("WORLD_SIZE", "2")]).contains("RANK=x"));
        assert!(error(&[("RANK", "2"), ("WORLD_SIZE", "2")]).contains("inconsistent"));
        assert!(error(&[("MASTER_PORT", "99999")]).contains("MASTER_PORT"));
    }
}
