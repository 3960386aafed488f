// `fsb agent`: the node agent (agent/agent.h), as a DaemonSet runs it. Flags follow Velero's
// node-agent where they exist; the environment of Velero's DaemonSet (NODE_NAME,
// VELERO_NAMESPACE, VELERO_SCRATCH_DIR, AWS_SHARED_CREDENTIALS_FILE) fills in what is not given.
// SIGTERM or SIGINT: running jobs are handed back (phase New), the last status patch finishes,
// then the process exits 0.


#include "agent/agent.h"
#include "agent/http_server.h"
#include "base/log.h"
#include "cli/daemon.h"
#include "cli/global.h"
#include "kube/client.h"

namespace fsb::cli {
namespace {

struct AgentFlags {
  agent::AgentOptions options;
  DaemonFlags daemon;
  std::string metrics_address = ":8085";
  std::string progress_interval = "10s";
};

}  // namespace

void AddAgentCommand(CLI::App& app, GlobalOptions& g, std::vector<Command>& out) {
  auto flags = std::make_shared<AgentFlags>();
  CLI::App* sub = app.add_subcommand(
      "agent", "Run the node agent (PodVolumeBackups and PodVolumeRestores of this node)");
  agent::AgentOptions& o = flags->options;
  sub->add_option("--node-name", o.node_name, "this node's name (default $NODE_NAME)");
  sub->add_option("--namespace", o.ns,
                  "Velero's namespace (default $VELERO_NAMESPACE, else velero)");
  sub->add_option("--host-pods", o.host_pods, "the kubelet pods directory as mounted here")
      ->capture_default_str();
  sub->add_option("--host-root", o.host_root,
                  "a host directory mounted here, for hostPath volumes (e.g. /host)");
  sub->add_option("--host-root-on-host", o.host_root_on_host, "what --host-root is on the host")
      ->capture_default_str();
  sub->add_option("--max-concurrent", o.max_concurrent,
                  "concurrent backups and restores on this node")
      ->capture_default_str();
  sub->add_option("--metrics-address", flags->metrics_address,
                  "/metrics, /healthz, /readyz listen address")
      ->capture_default_str();
  sub->add_option("--progress-interval", flags->progress_interval,
                  "minimum time between progress patches")
      ->capture_default_str();
  AddDaemonFlags(sub, flags->daemon, "re-examine every object this often");
  sub->add_option("--scratch-dir", o.scratch_dir,
                  "scratch directory (default $VELERO_SCRATCH_DIR, else /scratch)");
  sub->add_option("--credentials-file", o.credentials_file,
                  "object store credentials file (default $AWS_SHARED_CREDENTIALS_FILE)");
  sub->add_option("--max-resumes", o.max_resumes,
                  "restarts of an interrupted backup before it fails")
      ->capture_default_str();
  out.push_back(
      {sub, [&g, flags]() -> int {
         agent::AgentOptions o = flags->options;
         if (o.node_name.empty()) o.node_name = EnvOr("NODE_NAME", "");
         if (o.ns == "velero") o.ns = EnvOr("VELERO_NAMESPACE", "velero");
         if (o.scratch_dir == "/scratch") o.scratch_dir = EnvOr("VELERO_SCRATCH_DIR", "/scratch");
         if (o.credentials_file.empty())
           o.credentials_file = EnvOr("AWS_SHARED_CREDENTIALS_FILE", "");
         Result<std::chrono::seconds> pi = ParseDuration(flags->progress_interval);
         if (!pi.ok()) return Fail(g, pi.status().WithContext("--progress-interval"));
         o.progress_interval = *pi;
         Result<std::chrono::seconds> rs = ParseDuration(flags->daemon.resync);
         if (!rs.ok()) return Fail(g, rs.status().WithContext("--resync"));
         o.resync = *rs;
         return RunDaemon(g, flags->daemon, "agent",
                          [&](kube::Client& client, std::stop_token stop,
                              const std::shared_ptr<spdlog::logger>& log) -> Status {
                            FSB_ASSIGN_OR_RETURN(std::unique_ptr<agent::Agent> a,
                                                 agent::Agent::Create(client, o));
                            agent::Agent* ap = a.get();
                            FSB_ASSIGN_OR_RETURN(
                                std::unique_ptr<agent::HttpServer> http,
                                agent::HttpServer::Start(
                                    flags->metrics_address, [ap] { return ap->metrics().Render(); },
                                    [ap] { return ap->Ready(); }));
                            log->info("serving metrics address={} port={}",
                                      flags->metrics_address, http->port());
                            return a->Run(stop);
                          });
       }});
}

}  // namespace fsb::cli
