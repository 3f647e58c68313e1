//! `nanochat config show|presets`.
use crate::cli::{ConfigCommand, GlobalOptions};

pub fn run(global: &GlobalOptions, command: &ConfigCommand) -> anyhow::Result<()> {
    match command {
        ConfigCommand::Show => print!("{}", global.resolve_config()?.to_toml()),
        ConfigCommand::Presets => {
            for name in crate::config::builtin_names() {
                let c = crate::config::resolve(name, &[], None)?;
                let hw = &c.hardware;
                let machine = if hw.device == "cpu" {
                    "CPU".to_string()
                } else {
                    format!(
                        "{} GPU(s) >= {:.0} GiB, compute >= {:.1}",
                        hw.gpus, hw.min_gpu_memory_gib, hw.min_compute_capability
                    )
                };
                println!("{name:6} {} [{machine}, {:.0} GiB disk]", c.run.description, hw.disk_gib);
            }
        }
    }
    Ok(())
}
