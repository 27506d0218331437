//! Sluice's benchmarks and load generator. Every figure is a ratio measured side by side in one run (Sluice
//! against a bare forwarder or another server), because the machines they run on are shared and noisy.

pub mod bare;
pub mod chart;
pub mod fanout;
pub mod janus;
pub mod meeting;
pub mod turn;

/// Where the load generator and the servers it measures run. The generator takes the first CPU and the servers
/// the others (Sluice's workers pin themselves there by default; the bare forwarder is pinned there; Janus and
/// Sluice's control plane may use every CPU), so a generator thread never waits behind a busy server thread for
/// a scheduler slice: that wait, not the servers, made the delay tails of earlier runs.
pub mod placement {
    /// Pins the calling thread (call it before the generator's threads start: they inherit it) to the first CPU;
    /// returns the CPU the servers' pinned threads use, or `None` on a machine with one CPU (nothing is pinned).
    pub fn pin_generator() -> Option<usize> {
        let ids = core_affinity::get_core_ids().unwrap_or_default();
        if ids.len() < 2 {
            return None;
        }
        core_affinity::set_for_current(ids[0]);
        Some(ids[1].id)
    }

    /// The CPU the servers' pinned threads use (the second), if the machine has two or more.
    pub fn server_cpu() -> Option<usize> {
        let ids = core_affinity::get_core_ids().unwrap_or_default();
        ids.get(1).filter(|_| ids.len() >= 2).map(|c| c.id)
    }

    /// A server started by the generator may run on every CPU (a child inherits its parent thread's CPUs).
    pub fn on_every_cpu(cmd: &mut std::process::Command) {
        use std::os::unix::process::CommandExt;
        // SAFETY: between fork and exec only async-signal-safe calls: sched_setaffinity and the CPU_* macros,
        // which write to a stack-local set.
        unsafe {
            cmd.pre_exec(|| {
                let mut set: libc::cpu_set_t = std::mem::zeroed();
                for cpu in 0..libc::CPU_SETSIZE as usize {
                    libc::CPU_SET(cpu, &mut set);
                }
                libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
                Ok(())
            });
        }
    }
}
