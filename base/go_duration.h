// base/go_duration.h: Go's time.ParseDuration, for the durations Velero's objects carry
// (Backup spec.ttl "720h0m0s", BackupRepository spec.maintenanceFrequency, cron "@every 1h30m",
// timeout annotations). Pure function; safe for concurrent use.
#pragma once

#include <chrono>
#include <string_view>

#include "base/status.h"

namespace fsb {

// A signed sequence of decimal numbers, each with an optional fraction and a unit (ns, us, µs,
// μs, ms, s, m, h): "168h0m0s", "1.5h", "-90s", "300ms"; "0" alone is zero. kInvalidArgument with
// Go's messages (`time: invalid duration "x"`, `time: missing unit in duration "1"`,
// `time: unknown unit "d" in duration "1d"`) otherwise, also on overflow of int64 nanoseconds.
Result<std::chrono::nanoseconds> ParseGoDuration(std::string_view s);

}  // namespace fsb
