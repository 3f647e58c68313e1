//! `TaskMixture` (NANOCHAT.md §5.2): all (task, local index) pairs of its tasks, in task order,
//! shuffled once with `random.Random(42)`; passing a task twice oversamples it.
use super::{Examples, SharedTask, TaskError};
use crate::chat::conversation::Conversation;
use crate::pyrandom::python::PyRandom;

/// The mixture shuffle's seed (§5.2).
pub const MIXTURE_SEED: i64 = 42;

pub struct TaskMixture {
    tasks: Vec<SharedTask>,
    index_map: Vec<(u32, u32)>,
}

impl TaskMixture {
    pub fn new(tasks: Vec<SharedTask>) -> Self {
        let mut index_map = Vec::with_capacity(tasks.iter().map(|t| t.len()).sum());
        for (t, task) in tasks.iter().enumerate() {
            index_map.extend((0..task.len()).map(|i| (t as u32, i as u32)));
        }
        PyRandom::new(MIXTURE_SEED).shuffle(&mut index_map);
        TaskMixture { tasks, index_map }
    }

    pub fn tasks(&self) -> &[SharedTask] {
        &self.tasks
    }

    /// (task position, local index) of each mixture example, in mixture order.
    pub fn index_map(&self) -> &[(u32, u32)] {
        &self.index_map
    }
}

impl Examples for TaskMixture {
    fn name(&self) -> String {
        let names: Vec<String> = self.tasks.iter().map(|t| t.name()).collect();
        format!("TaskMixture[{}]", names.join(", "))
    }
    fn num_examples(&self) -> usize {
        self.index_map.len()
    }
    fn example(&self, index: usize) -> Result<Conversation, TaskError> {
        let &(task, local) = self.index_map.get(index).ok_or(TaskError::OutOfRange {
            task: self.name(),
            index,
            len: self.index_map.len(),
        })?;
        self.tasks[task as usize].get(local as usize)
    }
}
