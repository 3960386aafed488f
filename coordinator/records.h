// coordinator/records.h: what the coordinator keeps of a backup in its backup storage location,
// so that another cluster (or this one after losing its objects) can restore it. Under
// `backups/<backup>/`, Velero's layout (velero-fs-backup.md §4.3, §8.4):
//   velero-backup.json                   the Backup object (JSON), as Velero writes it
//   <backup>-podvolumebackups.json.gz    gzip of a JSON array of the final PodVolumeBackups
//   <backup>-fsb-resources.json.gz       gzip of a JSON array of the manifests (as read from the
//                                        API server) of the pods whose volumes were backed up and
//                                        of the PVCs they use: fsb's own file, since fsb does not
//                                        back up the other resources as Velero's server does
// Pure functions plus an ObjectStore; safe for concurrent use.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "base/bytes.h"
#include "base/status.h"
#include "kube/client.h"
#include "repo/backend/object_store.h"

namespace fsb::coordinator {

// zlib's gzip format (RFC 1952), as Go's gzip.Writer writes and reads it.
Result<Bytes> Gzip(ByteView data);
// kCorruption for anything that is not one complete gzip stream; kResourceExhausted past
// `max_bytes` of output (a bomb must not take the coordinator down).
Result<Bytes> Gunzip(ByteView data, uint64_t max_bytes = 1ull << 30);

std::string BackupRecordKey(std::string_view backup);            // backups/b/velero-backup.json
std::string PodVolumeBackupsRecordKey(std::string_view backup);  // .../b-podvolumebackups.json.gz
std::string ResourcesRecordKey(std::string_view backup);         // .../b-fsb-resources.json.gz

// Writers: the object (or array) serialised and, for .gz keys, gzipped; one Put each.
Status WriteBackupRecord(repo::ObjectStore& store, std::string_view backup,
                         const kube::Object& obj);
Status WritePodVolumeBackupsRecord(repo::ObjectStore& store, std::string_view backup,
                                   const std::vector<kube::Object>& pvbs);
Status WriteResourcesRecord(repo::ObjectStore& store, std::string_view backup,
                            const std::vector<kube::Object>& resources);

// Readers: kNotFound when the record is absent; kCorruption naming the key when it is not what
// the writer wrote (bad gzip, bad JSON, not an array of objects).
Result<kube::Object> ReadBackupRecord(repo::ObjectStore& store, std::string_view backup);
Result<std::vector<kube::Object>> ReadPodVolumeBackupsRecord(repo::ObjectStore& store,
                                                             std::string_view backup);
Result<std::vector<kube::Object>> ReadResourcesRecord(repo::ObjectStore& store,
                                                      std::string_view backup);

}  // namespace fsb::coordinator
