// `fsb coordinator`: turns Velero Backups and Restores into PodVolumeBackups and
// PodVolumeRestores for fsb's node agents (coordinator/coordinator.h); one Deployment per
// cluster. Flags follow Velero's server where they exist (--fs-backup-timeout,
// --default-volumes-to-fs-backup, --default-backup-ttl, --default-backup-storage-location).
// SIGTERM or SIGINT: the step in flight finishes, then the process exits 0.


#include "base/log.h"
#include "cli/daemon.h"
#include "cli/global.h"
#include "coordinator/coordinator.h"
#include "kube/client.h"
#include "kube/velero.h"

namespace fsb::cli {
namespace {

struct CoordinatorFlags {
  coordinator::CoordinatorOptions options;
  DaemonFlags daemon;
  std::string fs_backup_timeout = "4h";
  std::string default_ttl = "720h";
};

}  // namespace

void AddCoordinatorCommand(CLI::App& app, GlobalOptions& g, std::vector<Command>& out) {
  auto flags = std::make_shared<CoordinatorFlags>();
  CLI::App* sub = app.add_subcommand(
      "coordinator", "Run the coordinator (Velero Backups/Restores → PodVolumeBackups/Restores)");
  coordinator::CoordinatorOptions& o = flags->options;
  sub->add_option("--namespace", o.ns,
                  "Velero's namespace (default $VELERO_NAMESPACE, else velero)");
  sub->add_flag("--claim-all-backups", o.claim_all,
                "act on every Backup and Restore, not only those labelled "
                "fsb.velero.io/coordinator=true (clusters without a Velero server)");
  sub->add_flag("--default-volumes-to-fs-backup", o.default_volumes_to_fs_backup,
                "back up all pod volumes when a Backup does not say");
  sub->add_option("--fs-backup-timeout", flags->fs_backup_timeout,
                  "how long a Backup or Restore waits for its pod volumes")
      ->capture_default_str();
  sub->add_option("--default-backup-ttl", flags->default_ttl, "Backup ttl when spec.ttl is empty")
      ->capture_default_str();
  sub->add_option("--default-backup-storage-location", o.default_bsl,
                  "BSL used when a Backup names none and none is marked default")
      ->capture_default_str();
  sub->add_option("--restore-helper-image", o.restore_helper.image,
                  "image of the restore-wait init container")
      ->capture_default_str();
  sub->add_option("--scratch-dir", o.storage.scratch_dir, "where credential files are written")
      ->capture_default_str();
  sub->add_option("--credentials-file", o.storage.credentials_file,
                  "object store credentials file (default $AWS_SHARED_CREDENTIALS_FILE)");
  sub->add_flag("!--no-schedules", o.schedules, "do not run the Schedule controller");
  sub->add_flag("!--no-maintenance", o.maintenance,
                "do not run repository maintenance and backup garbage collection");
  sub->add_option("--workers", o.workers, "objects reconciled at once")->capture_default_str();
  AddDaemonFlags(sub, flags->daemon, "re-examine every Backup and Restore this often");
  out.push_back(
      {sub, [&g, flags]() -> int {
         coordinator::CoordinatorOptions o = flags->options;
         if (o.ns == "velero") o.ns = EnvOr("VELERO_NAMESPACE", "velero");
         o.storage.ns = o.ns;
         if (o.storage.credentials_file.empty()) {
           o.storage.credentials_file = EnvOr("AWS_SHARED_CREDENTIALS_FILE", "");
         }
         Result<std::chrono::milliseconds> t =
             kube::velero::ParseGoDuration(flags->fs_backup_timeout);
         if (!t.ok()) return Fail(g, t.status().WithContext("--fs-backup-timeout"));
         o.fs_backup_timeout = *t;
         Result<std::chrono::milliseconds> ttl = kube::velero::ParseGoDuration(flags->default_ttl);
         if (!ttl.ok()) return Fail(g, ttl.status().WithContext("--default-backup-ttl"));
         o.default_ttl = *ttl;
         Result<std::chrono::seconds> rs = ParseDuration(flags->daemon.resync);
         if (!rs.ok()) return Fail(g, rs.status().WithContext("--resync"));
         o.resync = *rs;
         return RunDaemon(g, flags->daemon, "coordinator",
                          [&](kube::Client& client, std::stop_token stop,
                              const std::shared_ptr<spdlog::logger>&) -> Status {
                            FSB_ASSIGN_OR_RETURN(std::unique_ptr<coordinator::Coordinator> c,
                                                 coordinator::Coordinator::Create(client, o));
                            return c->Run(stop);
                          });
       }});
}

}  // namespace fsb::cli
