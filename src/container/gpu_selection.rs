//! Which GPUs a container gets, as `docker run --gpus` spells it: `all`, `none`, or device indices or
//! UUIDs (`0,1`, `GPU-3f...`). Becomes the engine's device request for the NVIDIA runtime.
use std::str::FromStr;

use bollard::models::DeviceRequest;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum GpuSelection {
    All,
    None,
    Devices(Vec<String>),
}

impl FromStr for GpuSelection {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text.trim() {
            "all" => Ok(GpuSelection::All),
            "none" | "" => Ok(GpuSelection::None),
            list => {
                let devices: Vec<String> = list.split(',').map(|d| d.trim().to_string()).collect();
                if devices.iter().any(|d| d.is_empty() || d.contains(char::is_whitespace)) {
                    return Err(format!(
                        "`{text}` is not a GPU selection: use all, none, or a comma-separated list of indices or UUIDs"
                    ));
                }
                Ok(GpuSelection::Devices(devices))
            }
        }
    }
}

impl GpuSelection {
    /// The device request `docker run --gpus` sends (driver left to the engine, capability "gpu").
    pub fn device_requests(&self) -> Option<Vec<DeviceRequest>> {
        let request = |count, device_ids| DeviceRequest {
            driver: Some(String::new()),
            count,
            device_ids,
            capabilities: Some(vec![vec!["gpu".to_string()]]),
            options: None,
        };
        match self {
            GpuSelection::None => None,
            GpuSelection::All => Some(vec![request(Some(-1), None)]),
            GpuSelection::Devices(ids) => Some(vec![request(None, Some(ids.clone()))]),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_docker_spellings() {
        assert_eq!("all".parse(), Ok(GpuSelection::All));
        assert_eq!("none".parse(), Ok(GpuSelection::None));
        assert_eq!("0,1".parse(), Ok(GpuSelection::Devices(vec!["0".into(), "1".into()])));
        assert_eq!("GPU-3f2a".parse(), Ok(GpuSelection::Devices(vec!["GPU-3f2a".into()])));
        assert!("0,,1".parse::<GpuSelection>().is_err());
        assert!("0, 1 2".parse::<GpuSelection>().is_err());
    }

    #[test]
    fn device_requests_match_docker_run() {
        assert_eq!(GpuSelection::None.device_requests(), None);
        let all = GpuSelection::All.device_requests().unwrap();
        assert_eq!(all.len(), 1);
        assert_eq!(all[0].count, Some(-1));
        assert_eq!(all[0].device_ids, None);
        assert_eq!(all[0].capabilities, Some(vec![vec!["gpu".to_string()]]));
        let two = GpuSelection::Devices(vec!["0".into(), "3".into()]).device_requests().unwrap();
        assert_eq!(two[0].count, None);
        assert_eq!(two[0].device_ids, Some(vec!["0".to_string(), "3".to_string()]));
    }
}
