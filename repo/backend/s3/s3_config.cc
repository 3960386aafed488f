#include "repo/backend/s3/s3_config.h"

#include <fmt/format.h>

#include <cerrno>
#include <cstdlib>
#include <fstream>
#include <map>
#include <sstream>
#include <vector>

namespace fsb::repo {
namespace {

bool IsDigit(char c) { return c >= '0' && c <= '9'; }
bool IsLower(char c) { return c >= 'a' && c <= 'z'; }
bool IsAlnum(char c) { return IsDigit(c) || IsLower(c) || (c >= 'A' && c <= 'Z'); }

std::string ToLower(std::string_view s) {
  std::string out(s);
  for (char& c : out) {
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  }
  return out;
}

std::string_view Trim(std::string_view s) {
  const char* ws = " \t\r\n";
  const size_t b = s.find_first_not_of(ws);
  if (b == std::string_view::npos) return {};
  return s.substr(b, s.find_last_not_of(ws) - b + 1);
}

Status Malformed(std::string_view repo, std::string_view what) {
  return Status::InvalidArgument(
      fmt::format("invalid s3 repository \"{}\": {} (want s3:HOST[:PORT]/BUCKET[/PREFIX] or "
                  "s3:http(s)://HOST[:PORT]/BUCKET[/PREFIX])",
                  repo, what));
}

// "host", "host:port", "[v6]", "[v6]:port". Returns the host without the port, or an error text.
Result<std::string> CheckEndpoint(std::string_view endpoint) {
  if (endpoint.empty()) return Status::InvalidArgument("no endpoint host");
  if (endpoint.find('@') != std::string_view::npos) {
    return Status::InvalidArgument(
        "credentials in the repository name are not supported (use AWS_ACCESS_KEY_ID and "
        "AWS_SECRET_ACCESS_KEY)");
  }
  std::string_view host = endpoint;
  std::string_view port;
  if (endpoint.front() == '[') {
    const size_t close = endpoint.find(']');
    if (close == std::string_view::npos)
      return Status::InvalidArgument("unterminated IPv6 address");
    host = endpoint.substr(0, close + 1);
    std::string_view rest = endpoint.substr(close + 1);
    if (!rest.empty()) {
      if (rest.front() != ':') return Status::InvalidArgument("junk after the IPv6 address");
      port = rest.substr(1);
    } else {
      port = {};
    }
    for (char c : host.substr(1, host.size() - 2)) {
      if (!IsAlnum(c) && c != ':' && c != '.') {
        return Status::InvalidArgument(fmt::format("invalid IPv6 address \"{}\"", host));
      }
    }
    if (host.size() == 2) return Status::InvalidArgument("empty IPv6 address");
  } else {
    const size_t colon = endpoint.find(':');
    if (colon != std::string_view::npos) {
      host = endpoint.substr(0, colon);
      port = endpoint.substr(colon + 1);
      if (port.empty()) return Status::InvalidArgument("empty port after ':'");
    }
    if (host.empty()) return Status::InvalidArgument("no endpoint host");
    for (char c : host) {
      if (!IsAlnum(c) && c != '.' && c != '-' && c != '_') {
        return Status::InvalidArgument(
            fmt::format("invalid character '{}' in endpoint host \"{}\"", c, host));
      }
    }
  }
  if (!port.empty() || endpoint.back() == ':') {
    uint32_t p = 0;
    bool ok = !port.empty() && port.size() <= 5;
    for (char c : port) {
      if (!IsDigit(c)) ok = false;
      p = p * 10 + static_cast<uint32_t>(c - '0');
    }
    if (!ok || p == 0 || p > 65535) {
      return Status::InvalidArgument(fmt::format("invalid port \"{}\"", port));
    }
  }
  return std::string(host);
}

// restic cleans the prefix with Go's path.Clean. A ".." that climbs above the bucket is refused:
// curl would collapse it in the URL, so it could never name the objects it seems to.
Result<std::string> CleanPrefix(std::string_view prefix) {
  std::vector<std::string_view> segs;
  size_t pos = 0;
  while (pos <= prefix.size()) {
    size_t slash = prefix.find('/', pos);
    if (slash == std::string_view::npos) slash = prefix.size();
    std::string_view seg = prefix.substr(pos, slash - pos);
    if (seg == "..") {
      if (segs.empty())
        return Status::InvalidArgument("prefix climbs above the bucket with \"..\"");
      segs.pop_back();
    } else if (!seg.empty() && seg != ".") {
      segs.push_back(seg);
    }
    pos = slash + 1;
  }
  std::string out;
  for (std::string_view s : segs) {
    if (!out.empty()) out += '/';
    out += s;
  }
  return out;
}

// S3's bucket rules, relaxed the way custom servers are (upper case, '_', up to 255 characters:
// legacy us-east-1 buckets and MinIO/Ceph accept them).
Status CheckBucket(std::string_view bucket) {
  if (bucket.empty()) return Status::InvalidArgument("no bucket name");
  if (bucket.size() > 255) return Status::InvalidArgument("bucket name longer than 255 characters");
  for (char c : bucket) {
    if (!IsAlnum(c) && c != '.' && c != '-' && c != '_') {
      return Status::InvalidArgument(
          fmt::format("invalid character '{}' in bucket name \"{}\"", c, bucket));
    }
  }
  return Status::Ok();
}

// A bucket name usable as a DNS label under a wildcard TLS certificate.
bool VirtualHostable(std::string_view bucket) {
  if (bucket.size() < 3 || bucket.size() > 63) return false;
  for (char c : bucket) {
    if (!IsLower(c) && !IsDigit(c) && c != '-') return false;
  }
  return bucket.front() != '-' && bucket.back() != '-';
}

// For AWS endpoints: true, and the region named in the host ("" for the global endpoint).
// s3.amazonaws.com, s3.eu-west-1.amazonaws.com, s3-eu-west-1.amazonaws.com (the form Velero
// writes), s3.dualstack.eu-west-1.amazonaws.com, s3-external-1.amazonaws.com, and .com.cn.
bool AwsEndpoint(std::string_view host, std::string* region) {
  const std::string h = ToLower(host);
  std::string_view rest;
  for (std::string_view suffix : {".amazonaws.com", ".amazonaws.com.cn"}) {
    if (h.size() > suffix.size() && h.ends_with(suffix)) {
      rest = std::string_view(h).substr(0, h.size() - suffix.size());
    }
  }
  if (rest.empty()) return false;
  region->clear();
  if (rest == "s3" || rest == "s3-external-1") {
    if (rest == "s3-external-1") *region = "us-east-1";
    return true;
  }
  if (!rest.starts_with("s3.") && !rest.starts_with("s3-")) return true;  // some other AWS host
  rest.remove_prefix(3);
  if (rest.starts_with("dualstack.")) rest.remove_prefix(10);
  bool plausible = !rest.empty();
  for (char c : rest) {
    if (!IsLower(c) && !IsDigit(c) && c != '-') plausible = false;
  }
  if (plausible) *region = std::string(rest);
  return true;
}

// Minimal INI reader for the shared credentials file: section -> key -> value.
using Ini = std::map<std::string, std::map<std::string, std::string>>;

Ini ParseIni(const std::string& text) {
  Ini ini;
  std::string section;
  std::istringstream in(text);
  std::string raw;
  while (std::getline(in, raw)) {
    std::string_view line = Trim(raw);
    if (line.empty() || line.front() == '#' || line.front() == ';') continue;
    if (line.front() == '[') {
      const size_t close = line.find(']');
      section = std::string(Trim(
          line.substr(1, close == std::string_view::npos ? std::string_view::npos : close - 1)));
      // ~/.aws/config spells sections "[profile NAME]"; accept that here too.
      if (section.starts_with("profile ")) section = std::string(Trim(section.substr(8)));
      ini[section];
      continue;
    }
    const size_t eq = line.find('=');
    if (eq == std::string_view::npos || section.empty()) continue;
    ini[section][ToLower(Trim(line.substr(0, eq)))] = std::string(Trim(line.substr(eq + 1)));
  }
  return ini;
}

std::optional<std::string> NonEmpty(const EnvLookup& env, const std::string& name) {
  std::optional<std::string> v = env(name);
  if (v && v->empty()) return std::nullopt;
  return v;
}

}  // namespace

std::string S3Config::Location() const {
  return fmt::format("s3:{}://{}/{}{}{}", use_https ? "https" : "http", endpoint, bucket,
                     prefix.empty() ? "" : "/", prefix);
}

std::optional<std::string> ProcessEnv(const std::string& name) {
  const char* v = std::getenv(name.c_str());
  if (v == nullptr) return std::nullopt;
  return std::string(v);
}

Result<S3Config> ParseS3Location(std::string_view repo) {
  if (!repo.starts_with("s3:")) return Malformed(repo, "does not start with \"s3:\"");
  std::string_view rest = repo.substr(3);
  S3Config cfg;
  if (rest.starts_with("http://")) {
    cfg.use_https = false;
    rest.remove_prefix(7);
  } else if (rest.starts_with("https://")) {
    rest.remove_prefix(8);
  } else if (rest.starts_with("//")) {
    rest.remove_prefix(2);  // s3://HOST/BUCKET
  } else {
    const size_t scheme = rest.find("://");
    if (scheme != std::string_view::npos && scheme < rest.find('/')) {
      return Malformed(repo, fmt::format("unsupported scheme \"{}\" (only http and https)",
                                         rest.substr(0, scheme)));
    }
  }
  if (rest.find_first_of("?#") != std::string_view::npos) {
    return Malformed(repo, "query strings and fragments are not supported");
  }
  const size_t slash = rest.find('/');
  const std::string_view endpoint = rest.substr(0, slash);
  Result<std::string> host = CheckEndpoint(endpoint);
  if (!host.ok()) return Malformed(repo, host.status().message());
  if (slash == std::string_view::npos || slash + 1 == rest.size()) {
    return Malformed(repo, fmt::format("no bucket after the endpoint \"{}\"", endpoint));
  }
  const std::string_view path = rest.substr(slash + 1);
  const size_t slash2 = path.find('/');
  const std::string_view bucket = path.substr(0, slash2);
  if (Status s = CheckBucket(bucket); !s.ok()) return Malformed(repo, s.message());
  Result<std::string> prefix =
      CleanPrefix(slash2 == std::string_view::npos ? std::string_view() : path.substr(slash2 + 1));
  if (!prefix.ok()) return Malformed(repo, prefix.status().message());

  cfg.endpoint = std::string(endpoint);
  cfg.bucket = std::string(bucket);
  cfg.prefix = *prefix;
  std::string region;
  const bool aws = AwsEndpoint(*host, &region);
  cfg.path_style = !aws || !VirtualHostable(cfg.bucket);
  cfg.region = region;  // "" unless the endpoint names one; ResolveS3Config fills the rest
  return cfg;
}

Result<s3::Credentials> LoadS3Credentials(const EnvLookup& env) {
  const std::optional<std::string> id = NonEmpty(env, "AWS_ACCESS_KEY_ID");
  const std::optional<std::string> secret = NonEmpty(env, "AWS_SECRET_ACCESS_KEY");
  if (id && secret) {
    s3::Credentials c;
    c.access_key_id = *id;
    c.secret_access_key = Secret<std::string>(*secret);
    if (auto token = NonEmpty(env, "AWS_SESSION_TOKEN"))
      c.session_token = Secret<std::string>(*token);
    return c;
  }
  if (id || secret) {
    return Status::InvalidArgument(fmt::format("{} is set but {} is not",
                                               id ? "AWS_ACCESS_KEY_ID" : "AWS_SECRET_ACCESS_KEY",
                                               id ? "AWS_SECRET_ACCESS_KEY" : "AWS_ACCESS_KEY_ID"));
  }
  std::optional<std::string> file = NonEmpty(env, "AWS_SHARED_CREDENTIALS_FILE");
  const bool explicit_file = file.has_value();
  if (!file) {
    if (auto home = NonEmpty(env, "HOME")) file = *home + "/.aws/credentials";
  }
  const std::string profile = NonEmpty(env, "AWS_PROFILE").value_or("default");
  if (file) {
    std::ifstream in(*file, std::ios::binary);
    if (!in) {
      const int err = errno;
      if (explicit_file || err != ENOENT) {
        return Status::FromErrno(err, "read shared credentials file", *file);
      }
    } else {
      std::stringstream ss;
      ss << in.rdbuf();
      const Ini ini = ParseIni(ss.str());
      auto section = ini.find(profile);
      if (section == ini.end()) {
        return Status::InvalidArgument(
            fmt::format("profile \"{}\" not found in shared credentials file {}", profile, *file));
      }
      auto get = [&](const char* key) -> std::string {
        auto it = section->second.find(key);
        return it == section->second.end() ? std::string() : it->second;
      };
      s3::Credentials c;
      c.access_key_id = get("aws_access_key_id");
      c.secret_access_key = Secret<std::string>(get("aws_secret_access_key"));
      c.session_token = Secret<std::string>(get("aws_session_token"));
      if (c.access_key_id.empty() || c.secret_access_key.Reveal().empty()) {
        return Status::InvalidArgument(
            fmt::format("profile \"{}\" in shared credentials file {} lacks aws_access_key_id or "
                        "aws_secret_access_key",
                        profile, *file));
      }
      return c;
    }
  }
  return Status::InvalidArgument(
      "no S3 credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or point "
      "AWS_SHARED_CREDENTIALS_FILE at a credentials file (profile from AWS_PROFILE)");
}

Result<S3Config> ResolveS3Config(std::string_view repo, const S3Options& options,
                                 const EnvLookup& env) {
  FSB_ASSIGN_OR_RETURN(S3Config cfg, ParseS3Location(repo));
  if (!options.region.empty()) {
    cfg.region = options.region;
  } else if (cfg.region.empty()) {
    cfg.region = NonEmpty(env, "AWS_DEFAULT_REGION")
                     .value_or(NonEmpty(env, "AWS_REGION").value_or("us-east-1"));
  }
  FSB_ASSIGN_OR_RETURN(cfg.credentials, LoadS3Credentials(env));
  cfg.http.ca_file = options.ca_file;
  cfg.http.insecure_tls = options.insecure_tls;
  return cfg;
}

}  // namespace fsb::repo
