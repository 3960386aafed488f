// agent/agent.h: `fsb agent`, the node agent run by a DaemonSet on every node. It does for
// Velero's PodVolumeBackups and PodVolumeRestores (velero.io/v1) what Velero's node-agent does
// (velero-fs-backup.md §5, §6), reading and writing pod volumes through the kubelet pods
// directory, and fixes what its users complain about (§12):
//   - PVBs whose spec.node is this node (uploader "restic" or empty; kopia ones are left alone):
//     New → InProgress → Completed | Failed, Canceled on spec.cancel; progress patched at most
//     every progress_interval; parent = the latest Completed PVB of the same PVC (§5.4).
//   - PVRs whose pod runs on this node: restore into the pod's volume, then the restore-wait
//     marker Velero's init container waits for.
//   - Restarts leave nothing stuck: on start, InProgress objects of this node that no agent runs
//     are resumed (at most max_resumes times, then Failed with the reason); on SIGTERM, running
//     objects are handed back (phase New) for the next agent.
//   - Jobs run concurrently up to max_concurrent, sharing the node's CPUs.
// Everything is driven by watches (informers); nothing polls the API server.
// Thread-safety: Run blocks on the calling thread; Ready/metrics are safe from any thread.
#pragma once

#include <chrono>
#include <memory>
#include <stop_token>
#include <string>

#include "agent/metrics.h"
#include "base/status.h"
#include "kube/client.h"

namespace fsb::agent {

struct AgentOptions {
  std::string node_name;      // NODE_NAME: this agent handles PVBs with spec.node == node_name
  std::string ns = "velero";  // VELERO_NAMESPACE: where PVBs, PVRs, BSLs and secrets live
  // The kubelet pods directory as mounted in the agent (Velero's /host_pods).
  std::string host_pods = "/host_pods";
  // The host directory tree holding hostPath PVs (local-path provisioner, kind), mounted in the
  // agent; empty: such volumes fail with a message saying how to enable them.
  std::string host_root;
  std::string host_root_on_host = "/";  // what host_root is on the host
  // Concurrent backups and restores on this node. Velero's default is 1 (velero#6663 asks for
  // more); 2 keeps both cores of a small node busy while leaving room for its workloads.
  int max_concurrent = 2;
  // Minimum time between two status.progress patches of one object (Velero: 10 s).
  std::chrono::milliseconds progress_interval{10'000};
  // Scratch directory for credential files (Velero's VELERO_SCRATCH_DIR).
  std::string scratch_dir = "/scratch";
  // Velero's mounted cloud credentials (AWS_SHARED_CREDENTIALS_FILE); empty: the environment.
  std::string credentials_file;
  // How often an InProgress object left by a dead agent is restarted before it is failed: a
  // volume that OOM-kills the agent every time must not loop forever.
  int max_resumes = 2;
  // How long a restore waits for its pod's volume directory to appear.
  std::chrono::seconds volume_wait{300};
  // How long a job waits for a conflicting (exclusive) repository lock, e.g. a running prune.
  std::chrono::seconds lock_wait{600};
  // Informer resync: re-examines every object (cancel requests, pods that appeared) this often.
  std::chrono::seconds resync{30};
  // Restore file ownership (uid/gid). Failures are reported in status.message, never swallowed.
  bool restore_owner = true;
};

class Agent {
 public:
  // `client` is the agent's API connection; it must outlive the agent.
  static Result<std::unique_ptr<Agent>> Create(kube::Client& client, AgentOptions options);
  virtual ~Agent() = default;

  // Starts the informers, resolves what a previous agent left InProgress, then serves until `stop`
  // is requested: running jobs are stopped and their objects handed back (phase New) before it
  // returns. Returns non-OK only when it cannot start (e.g. the API server refuses the watches
  // for longer than the start-up timeout).
  virtual Status Run(std::stop_token stop) = 0;

  // All informers synced and watching (for /readyz).
  virtual bool Ready() const = 0;
  virtual const Metrics& metrics() const = 0;
};

}  // namespace fsb::agent
