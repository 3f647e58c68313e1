//! `nanochat doctor`: the hardware preflight, printed as a table and written as a report section.
use anyhow::{bail, Context};

use crate::cli::{DoctorArgs, GlobalOptions};
use crate::hw::preflight::{self, DiskState, Finding, Outcome, Verdict};
use crate::hw::{cuda_backend, system, CudaBackend, CudaHost, GpuInventory, SystemInfo};
use crate::report_section::ReportSection;

pub fn run(global: &GlobalOptions, args: &DoctorArgs) -> anyhow::Result<()> {
    let config = global.resolve_config()?;
    let paths = global.paths();
    crate::logging::tee_to_file(&paths.logs().join("doctor.log"));
    let inventory = GpuInventory::probe();
    let system = SystemInfo::probe();
    let cuda = CudaBackend::probe();
    let disk = system::free_disk_gib(paths.base())
        .map(|free_gib| DiskState { free_gib, used_by_base_dir_gib: system::used_disk_gib(paths.base()) });
    let mut findings = preflight::check(&config.hardware, &inventory, disk);
    let usable = cuda_backend::diagnose(&cuda, &inventory, &CudaHost::probe());
    findings.extend(preflight::check_cuda(&config.hardware, &usable));
    findings.extend(preflight::check_shm(&config.hardware, system::shm_bytes()));
    if !cuda.is_linked() && config.hardware.device != "cuda" {
        findings.push(Finding {
            check: "libtorch CUDA backend".into(),
            found: cuda.describe(),
            needed: "libtorch_cuda linked into the binary".into(),
            verdict: Verdict::Fail,
            hint: Some("rebuild with `make build` (build.rs links libtorch_cuda)".into()),
        });
    }
    let outcome = preflight::outcome(&findings, args.allow_mismatch);
    let passed = outcome == Outcome::Pass;
    let fitting = if passed { Vec::new() } else { preflight::fitting_presets(&inventory, disk) };

    if args.json {
        let json = serde_json::json!({
            "preset": config.run.name, "passed": passed, "findings": findings, "gpus": inventory,
            "system": system, "cuda_backend": cuda, "fitting_presets": fitting,
            "cuda_unavailable": usable.as_ref().err().map(ToString::to_string),
        });
        println!("{}", serde_json::to_string_pretty(&json)?);
    } else {
        print_table(&config.run.name, &config.hardware.device, &system, &inventory, &cuda, &findings);
    }

    let mut section = ReportSection::new("Hardware check")
        .value("preset", config.run.name.clone())
        .value("GPUs", inventory.summary())
        .value("CUDA backend", cuda.describe())
        .value(
            "result",
            match outcome {
                Outcome::Pass => "pass",
                Outcome::MismatchAllowed => "mismatch, allowed",
                Outcome::Refused => "refused",
            },
        );
    for f in &findings {
        let verdict = match f.verdict {
            Verdict::Pass => "ok",
            Verdict::Warn => "warning",
            Verdict::Fail | Verdict::Blocked => "FAIL",
        };
        section = section.value(&f.check, format!("{verdict}: found {}; needed {}", f.found, f.needed));
    }
    section
        .write(&paths.report())
        .with_context(|| format!("writing the report section under {}", paths.report().display()))?;

    if passed {
        log::info!("preflight passed for preset `{}`", config.run.name);
        return Ok(());
    }
    if let (Err(cause), "cuda") = (&usable, config.hardware.device.as_str()) {
        let cpu_presets = if fitting.is_empty() { "none".to_string() } else { fitting.join(", ") };
        bail!(
            "preset `{}` needs CUDA and CUDA does not start here: {cause}.\nPresets that run on this machine: \
             {cpu_presets}",
            config.run.name
        );
    }
    let advice = match (inventory.driver_version.is_none(), fitting.is_empty()) {
        (true, false) => format!("no NVIDIA driver on this machine; presets that run on CPU: {}", fitting.join(", ")),
        (_, false) => format!("presets that fit this machine: {}", fitting.join(", ")),
        (_, true) => "no built-in preset fits this machine".to_string(),
    };
    if outcome == Outcome::MismatchAllowed {
        log::warn!(
            "hardware does not match preset `{}` ({advice}); going on because of --allow-mismatch",
            config.run.name
        );
        return Ok(());
    }
    bail!(
        "hardware does not match preset `{}`: {}.\n{advice}; or pass --allow-mismatch to go on anyway",
        config.run.name,
        findings.iter().filter(|f| f.verdict.fails()).map(|f| f.check.as_str()).collect::<Vec<_>>().join(", ")
    )
}

fn print_table(
    preset: &str,
    device: &str,
    sys: &SystemInfo,
    inv: &GpuInventory,
    cuda: &CudaBackend,
    findings: &[Finding],
) {
    println!("nanochat doctor: preset `{preset}` ({device})");
    println!("  build    {}", crate::build_info::version_line());
    println!("  host     {} ({}), {} cores, {:.1} GiB RAM", sys.hostname, sys.os, sys.logical_cpus, sys.memory_gib);
    println!("  libtorch {}", cuda.describe());
    match &inv.driver_version {
        Some(driver) => println!("  driver   {driver}, CUDA {}", inv.cuda_driver_version.as_deref().unwrap_or("?")),
        None => println!("  driver   none ({})", inv.unavailable_reason.as_deref().unwrap_or("NVML not available")),
    }
    for g in &inv.gpus {
        println!(
            "  GPU {}    {}, {:.1}/{:.1} GiB used, compute {}.{}, {}% busy, {} process(es)",
            g.index,
            g.name,
            g.memory_used_gib,
            g.memory_total_gib,
            g.compute_capability.0,
            g.compute_capability.1,
            g.utilization_percent.unwrap_or(0),
            g.processes.len()
        );
    }
    println!();
    let width = findings.iter().map(|f| f.check.len()).max().unwrap_or(5);
    for f in findings {
        let mark = match f.verdict {
            Verdict::Pass => "ok  ",
            Verdict::Warn => "warn",
            Verdict::Fail | Verdict::Blocked => "FAIL",
        };
        println!("  [{mark}] {:width$}  found {}; needed {}", f.check, f.found, f.needed);
        if let Some(hint) = &f.hint {
            println!("         {:width$}  -> {hint}", "");
        }
    }
    println!();
}
