// repo/backend/object_store.h: arbitrary named objects (not repository files) in an S3 bucket
// prefix or a local directory: where the coordinator keeps the records of a backup in its backup
// storage location (`backups/<backup>/...`, velero-fs-backup.md §4.3 bucket layout). Keys are
// relative '/'-separated paths without "." or ".." segments. Safe for concurrent use.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include "base/bytes.h"
#include "base/status.h"
#include "repo/backend/open.h"

namespace fsb::repo {

class ObjectStore {
 public:
  virtual ~ObjectStore() = default;
  // "s3:http://host/bucket/prefix" or "/dir", for messages; no secrets.
  virtual std::string Location() const = 0;
  // Atomic: readers see the old or the new content, never a part. Replaces an existing object.
  virtual Status Put(std::string_view key, ByteView data) = 0;
  // kNotFound when absent.
  virtual Result<Bytes> Get(std::string_view key) = 0;
  // Every key under `prefix` (recursively), relative to the store; order unspecified. A non-OK
  // return of `fn` stops the listing and is returned.
  virtual Status List(std::string_view prefix,
                      const std::function<Status(const std::string& key)>& fn) = 0;
};

// "s3:..." (as OpenBackend; credentials, region and TLS from `options`), or a local directory
// ("local:PATH" or an absolute path), created on the first Put. kInvalidArgument for any other
// scheme or a relative local path.
Result<std::unique_ptr<ObjectStore>> OpenObjectStore(std::string_view location,
                                                     const BackendOptions& options = {});

}  // namespace fsb::repo
