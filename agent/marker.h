// agent/marker.h: the restore-wait handshake with Velero's stock restore helper
// (velero-fs-backup.md §6.2–6.3): after a volume is restored, `<volume>/.velero/<restore-uid>`
// exists (directory 0755, empty file 0644), and Velero's `restore-wait` init container lets the pod
// start. Written through the volume's directory fd, never following a symlink (restored data could
// plant one at .velero).
#pragma once

#include <string_view>

#include "base/status.h"

namespace fsb::agent {

// Removes whatever is at <volume>/.velero (a directory tree, a file or a symlink, which is removed
// itself, never followed), then creates the directory and the marker file. kInvalidArgument for a
// restore UID that is not one path component; errno-based errors naming the path otherwise.
Status WriteRestoreMarker(int volume_fd, std::string_view restore_uid);

}  // namespace fsb::agent
