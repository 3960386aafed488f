// base/log.h: named spdlog loggers, one per module ("repo", "uploader", "cli", ...).
// Safe for concurrent use once SetupLogging has run (it runs in main, before any thread).
#pragma once

#include <spdlog/spdlog.h>

#include <memory>
#include <string>

namespace fsb {

// Returns the logger `name`, creating it (stderr, the level set by SetupLogging) on first use.
std::shared_ptr<spdlog::logger> GetLogger(const std::string& name);

// Sets the level of every existing and future logger, and the output form (text, or one JSON object
// a line when json is true).
void SetupLogging(spdlog::level::level_enum level, bool json = false);

}  // namespace fsb
