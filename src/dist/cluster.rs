//! The processes of one run as a training stage sees them: this process's rank and device, and the
//! process group (None with a single process), with the few scalar reductions the loops need.
use tch::{Device, Kind, Tensor};

use super::{DistContext, DistError, ProcessGroup, ReduceOp};

pub struct Cluster<'a> {
    pub ctx: &'a DistContext,
    pub group: Option<&'a ProcessGroup>,
    pub device: Device,
}

impl<'a> Cluster<'a> {
    pub fn rank(&self) -> usize {
        self.ctx.rank
    }

    pub fn world_size(&self) -> usize {
        self.ctx.world_size
    }

    pub fn is_master(&self) -> bool {
        self.ctx.is_master()
    }

    /// The element-wise reduction of `values` over every process (the values themselves with one).
    pub fn reduce(&self, values: &[f64], op: ReduceOp) -> Result<Vec<f64>, DistError> {
        if self.group.is_none() {
            return Ok(values.to_vec());
        }
        let mut t = Tensor::from_slice(values).to_kind(Kind::Double).to_device(self.device);
        self.all_reduce(&mut t, op)?;
        Ok(Vec::<f64>::try_from(t.to_device(Device::Cpu)).unwrap_or_else(|_| values.to_vec()))
    }

    /// Reduces a (contiguous) tensor on this process's device over every process, in place, without
    /// copying it to the host; with a single process it is left as it is.
    pub fn all_reduce(&self, t: &mut Tensor, op: ReduceOp) -> Result<(), DistError> {
        match self.group {
            Some(group) => group.all_reduce(t, op),
            None => Ok(()),
        }
    }

    /// Whether any process says yes.
    pub fn any(&self, flag: bool) -> Result<bool, DistError> {
        Ok(self.reduce(&[f64::from(u8::from(flag))], ReduceOp::Max)?[0] > 0.0)
    }

    pub fn barrier(&self) -> Result<(), DistError> {
        match self.group {
            Some(g) => g.barrier(),
            None => Ok(()),
        }
    }
}
