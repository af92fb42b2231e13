//! The machine's own limits, measured before any workload: durable write
//! bandwidth and fdatasync latency (fio) at the write sizes the workloads
//! use, and what loopback carries (iperf3).

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::Value;

use crate::results::{DiskLimit, Machine};
use crate::systems::free_port;

/// Everything measurable here; a tool that is missing or fails leaves its
/// fields empty and says why in the returned notes.
pub fn measure(dir: &Path, write_sizes: &[u64], runtime: Duration) -> (Machine, Vec<String>) {
    let mut notes = Vec::new();
    let mut machine = Machine {
        cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
        memory_bytes: memory_bytes(),
        kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .ok()
            .map(|s| s.trim().to_string()),
        ..Machine::default()
    };
    for &size in write_sizes {
        match fio(dir, size, runtime) {
            Ok(limit) => machine.disk.push(limit),
            Err(e) => notes.push(format!("fio at {size} bytes: {e}")),
        }
    }
    match iperf3(runtime) {
        Ok(gbit) => machine.loopback_gbit_s = Some(gbit),
        Err(e) => notes.push(format!("iperf3: {e}")),
    }
    (machine, notes)
}

fn memory_bytes() -> Option<u64> {
    let info = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = info.lines().find(|l| l.starts_with("MemTotal:"))?;
    Some(line.split_whitespace().nth(1)?.parse::<u64>().ok()? * 1024)
}

/// `fio --rw=write --ioengine=sync --fdatasync=1` at `size`, as targets.md asks.
fn fio(dir: &Path, size: u64, runtime: Duration) -> Result<DiskLimit, String> {
    let file = dir.join("fio.tmp");
    let out = Command::new("fio")
        .args([
            "--name=w".to_string(),
            format!("--filename={}", file.display()),
            "--size=512m".into(),
            "--rw=write".into(),
            format!("--bs={size}"),
            "--ioengine=sync".into(),
            "--fdatasync=1".into(),
            format!("--runtime={}", runtime.as_secs().max(1)),
            "--time_based".into(),
            "--output-format=json".into(),
        ])
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run fio: {e}"))?;
    let _ = std::fs::remove_file(&file);
    if !out.status.success() {
        return Err(format!("fio exited with {}", out.status));
    }
    parse_fio(&out.stdout, size)
}

fn parse_fio(json: &[u8], size: u64) -> Result<DiskLimit, String> {
    let v: Value = serde_json::from_slice(json).map_err(|e| format!("fio's output: {e}"))?;
    let job = &v["jobs"][0];
    let bw = job["write"]["bw_bytes"]
        .as_f64()
        .ok_or("fio's output has no write bandwidth")?;
    let pct = |p: &str| {
        job["sync"]["lat_ns"]["percentile"][p]
            .as_f64()
            .map(|ns| ns / 1000.0)
    };
    Ok(DiskLimit {
        write_size: size,
        mb_per_s: bw / 1e6,
        fdatasync_p50_us: pct("50.000000"),
        fdatasync_p99_us: pct("99.000000"),
    })
}

/// iperf3 over 127.0.0.1 for `runtime`, in Gbit/s.
fn iperf3(runtime: Duration) -> Result<f64, String> {
    let port = free_port().map_err(|e| e.to_string())?.to_string();
    let mut server = Command::new("iperf3")
        .args(["-s", "-1", "-B", "127.0.0.1", "-p", &port])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot run iperf3: {e}"))?;
    std::thread::sleep(Duration::from_millis(300));
    let out = Command::new("iperf3")
        .args([
            "-c",
            "127.0.0.1",
            "-p",
            &port,
            "-t",
            &runtime.as_secs().max(1).to_string(),
            "-J",
        ])
        .stdin(Stdio::null())
        .output();
    let _ = server.kill();
    let _ = server.wait();
    let out = out.map_err(|e| format!("cannot run iperf3: {e}"))?;
    parse_iperf3(&out.stdout)
}

fn parse_iperf3(json: &[u8]) -> Result<f64, String> {
    let v: Value = serde_json::from_slice(json).map_err(|e| format!("iperf3's output: {e}"))?;
    v["end"]["sum_received"]["bits_per_second"]
        .as_f64()
        .map(|b| b / 1e9)
        .ok_or_else(|| format!("iperf3 measured nothing: {}", v["error"]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fio_json_gives_bandwidth_and_sync_percentiles() {
        let json = br#"{"jobs":[{"write":{"bw_bytes":92916357},
            "sync":{"total_ios":10,"lat_ns":{"percentile":{"50.000000":142336,"99.000000":321536}}}}]}"#;
        let d = parse_fio(json, 16384).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(d.write_size, 16384);
        assert!((d.mb_per_s - 92.916357).abs() < 1e-9);
        assert_eq!(d.fdatasync_p50_us, Some(142.336));
        assert_eq!(d.fdatasync_p99_us, Some(321.536));
        assert!(parse_fio(b"{}", 1).is_err());
    }

    #[test]
    fn iperf3_json_gives_gbit() {
        let json = br#"{"end":{"sum_received":{"bits_per_second":21575217067.7}}}"#;
        let g = parse_iperf3(json).unwrap_or_else(|e| panic!("{e}"));
        assert!((g - 21.5752170677).abs() < 1e-6);
        let err = parse_iperf3(br#"{"error":"unable to connect"}"#).unwrap_err();
        assert!(err.contains("unable to connect"), "{err}");
    }
}
