#include "tests/support/tree_compare.h"

#include <dirent.h>
#include <fcntl.h>
#include <fmt/format.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <map>
#include <optional>

namespace fsb::testing {
namespace fs = std::filesystem;
namespace {

struct Entry {
  struct stat st {};
  std::string target;                           // symlinks
  std::map<std::string, std::string> xattrs;    // user.* only
  std::string xattr_error;
};

// Escapes control bytes and bytes that are not part of valid UTF-8.
std::string Show(std::string_view s) {
  if (s.empty()) return "<root>";
  std::string out;
  size_t i = 0;
  while (i < s.size()) {
    unsigned char c = static_cast<unsigned char>(s[i]);
    if (c == '\t') {
      out += "\\t";
      i++;
      continue;
    }
    if (c == '\n') {
      out += "\\n";
      i++;
      continue;
    }
    if (c < 0x20 || c == 0x7f) {
      out += fmt::format("\\x{:02X}", c);
      i++;
      continue;
    }
    if (c < 0x80) {
      out += char(c);
      i++;
      continue;
    }
    size_t len = c >= 0xf0 && c <= 0xf4 ? 4 : c >= 0xe0 ? 3 : c >= 0xc2 && c <= 0xdf ? 2 : 0;
    bool valid = len > 0 && i + len <= s.size();
    for (size_t k = 1; valid && k < len; k++) valid = (static_cast<unsigned char>(s[i + k]) & 0xc0) == 0x80;
    if (valid) {
      out.append(s.substr(i, len));
      i += len;
    } else {
      out += fmt::format("\\x{:02X}", c);
      i++;
    }
  }
  return out;
}

std::string ShowBytes(const std::string& v) {
  std::string out;
  for (unsigned char c : v) {
    if (c >= 0x20 && c < 0x7f && c != '\\') {
      out += char(c);
    } else {
      out += fmt::format("\\x{:02x}", c);
    }
  }
  return "\"" + out + "\"";
}

std::string TypeName(mode_t m) {
  switch (m & S_IFMT) {
    case S_IFREG: return "file";
    case S_IFDIR: return "dir";
    case S_IFLNK: return "symlink";
    case S_IFIFO: return "fifo";
    case S_IFCHR: return "chardev";
    case S_IFBLK: return "blockdev";
    case S_IFSOCK: return "socket";
    default: return "unknown";
  }
}

void ReadXattrs(const std::string& path, Entry& e) {
  ssize_t n = llistxattr(path.c_str(), nullptr, 0);
  if (n < 0) {
    if (errno != ENOTSUP) e.xattr_error = std::strerror(errno);
    return;
  }
  std::string names(size_t(n), '\0');
  n = llistxattr(path.c_str(), names.data(), names.size());
  if (n < 0) {
    e.xattr_error = std::strerror(errno);
    return;
  }
  names.resize(size_t(n));
  for (size_t pos = 0; pos < names.size();) {
    std::string name(names.c_str() + pos);
    pos += name.size() + 1;
    if (name.rfind("user.", 0) != 0) continue;
    ssize_t vn = lgetxattr(path.c_str(), name.c_str(), nullptr, 0);
    if (vn < 0) {
      e.xattr_error = name + ": " + std::strerror(errno);
      continue;
    }
    std::string value(size_t(vn), '\0');
    vn = lgetxattr(path.c_str(), name.c_str(), value.data(), value.size());
    if (vn < 0) {
      e.xattr_error = name + ": " + std::strerror(errno);
      continue;
    }
    value.resize(size_t(vn));
    e.xattrs[name] = value;
  }
}

// rel "" is the root; children are "name" and "dir/name".
void Walk(const std::string& root, const std::string& rel, const CompareOptions& opts,
          std::map<std::string, Entry>& out, std::vector<std::string>& errors, char side) {
  std::string path = rel.empty() ? root : root + "/" + rel;
  Entry e;
  if (lstat(path.c_str(), &e.st) != 0) {
    errors.push_back(fmt::format("{}: lstat {}: {}", side, Show(rel), std::strerror(errno)));
    return;
  }
  if (S_ISLNK(e.st.st_mode)) {
    std::string buf(size_t(e.st.st_size) + 256, '\0');
    ssize_t n = readlink(path.c_str(), buf.data(), buf.size());
    if (n < 0) {
      errors.push_back(fmt::format("{}: readlink {}: {}", side, Show(rel), std::strerror(errno)));
    } else {
      buf.resize(size_t(n));
      e.target = buf;
    }
  }
  if (opts.xattrs) ReadXattrs(path, e);
  bool is_dir = S_ISDIR(e.st.st_mode);
  out.emplace(rel, std::move(e));
  if (!is_dir) return;
  DIR* d = opendir(path.c_str());
  if (!d) {
    errors.push_back(fmt::format("{}: opendir {}: {}", side, Show(rel), std::strerror(errno)));
    return;
  }
  std::vector<std::string> names;
  while (dirent* de = readdir(d)) {
    std::string name = de->d_name;
    if (name == "." || name == "..") continue;
    names.push_back(name);
  }
  closedir(d);
  for (const std::string& name : names) {
    std::string child = rel.empty() ? name : rel + "/" + name;
    if (opts.ignore_paths.count(child)) continue;
    Walk(root, child, opts, out, errors, side);
  }
}

// The first differing offset, or nullopt when equal; `error` set when a file could not be read.
std::optional<uint64_t> FirstDifference(const std::string& pa, const std::string& pb, std::string& error) {
  int fa = open(pa.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
  int ea = errno;
  int fb = open(pb.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
  int eb = errno;
  if (fa < 0 || fb < 0) {
    if (fa >= 0) close(fa);
    if (fb >= 0) close(fb);
    // Without root a 0000 file cannot be read on either side: nothing to compare.
    if (fa < 0 && fb < 0 && ea == EACCES && eb == EACCES) return std::nullopt;
    error = fa < 0 ? std::string("a: ") + std::strerror(ea) : std::string("b: ") + std::strerror(eb);
    return std::nullopt;
  }
  std::string ba(1 << 20, '\0'), bb(1 << 20, '\0');
  uint64_t off = 0;
  std::optional<uint64_t> result;
  for (;;) {
    ssize_t na = read(fa, ba.data(), ba.size());
    ssize_t nb = read(fb, bb.data(), bb.size());
    if (na < 0 || nb < 0) {
      error = std::string("read: ") + std::strerror(errno);
      break;
    }
    // Regular local files give full reads; a short read on one side only is a difference.
    size_t n = size_t(std::min(na, nb));
    if (std::memcmp(ba.data(), bb.data(), n) != 0) {
      size_t i = 0;
      while (ba[i] == bb[i]) i++;
      result = off + i;
      break;
    }
    if (na != nb) {
      result = off + n;
      break;
    }
    if (na == 0) break;
    off += uint64_t(na);
  }
  close(fa);
  close(fb);
  return result;
}

std::string GroupOf(const std::map<std::string, Entry>& m, const std::string& rel,
                    const std::map<std::string, Entry>& other) {
  const struct stat& st = m.at(rel).st;
  std::string g;
  for (const auto& [p, e] : m) {
    if (S_ISDIR(e.st.st_mode) || !other.count(p)) continue;
    if (e.st.st_dev == st.st_dev && e.st.st_ino == st.st_ino) g += (g.empty() ? "" : ", ") + Show(p);
  }
  return "{" + g + "}";
}

}  // namespace

std::vector<std::string> CompareTrees(const fs::path& a, const fs::path& b, const CompareOptions& opts) {
  std::vector<std::string> diffs;
  std::map<std::string, Entry> ea, eb;
  Walk(a.string(), "", opts, ea, diffs, 'a');
  Walk(b.string(), "", opts, eb, diffs, 'b');
  for (const auto& [rel, e] : ea) {
    if (!eb.count(rel)) diffs.push_back(fmt::format("only in a: {} ({})", Show(rel), TypeName(e.st.st_mode)));
  }
  for (const auto& [rel, e] : eb) {
    if (!ea.count(rel)) diffs.push_back(fmt::format("only in b: {} ({})", Show(rel), TypeName(e.st.st_mode)));
  }
  std::set<std::string> reported_groups;
  for (const auto& [rel, x] : ea) {
    auto it = eb.find(rel);
    if (it == eb.end()) continue;
    const Entry& y = it->second;
    const std::string name = Show(rel);
    if ((x.st.st_mode & S_IFMT) != (y.st.st_mode & S_IFMT)) {
      diffs.push_back(fmt::format("type of {}: a {}, b {}", name, TypeName(x.st.st_mode), TypeName(y.st.st_mode)));
      continue;
    }
    const bool is_root = rel.empty();
    const bool meta = !is_root || opts.root_metadata;
    const bool is_link = S_ISLNK(x.st.st_mode);
    const bool is_dir = S_ISDIR(x.st.st_mode);
    if (meta && !is_link && (x.st.st_mode & 07777) != (y.st.st_mode & 07777)) {
      diffs.push_back(fmt::format("mode of {}: a {:04o}, b {:04o}", name, x.st.st_mode & 07777, y.st.st_mode & 07777));
    }
    if (meta && opts.owner && (x.st.st_uid != y.st.st_uid || x.st.st_gid != y.st.st_gid)) {
      diffs.push_back(fmt::format("owner of {}: a {}:{}, b {}:{}", name, x.st.st_uid, x.st.st_gid, y.st.st_uid,
                                  y.st.st_gid));
    }
    if (meta && (!is_dir || opts.dir_mtimes) &&
        (x.st.st_mtim.tv_sec != y.st.st_mtim.tv_sec || x.st.st_mtim.tv_nsec != y.st.st_mtim.tv_nsec)) {
      diffs.push_back(fmt::format("mtime of {}: a {}.{:09}, b {}.{:09}", name, x.st.st_mtim.tv_sec,
                                  x.st.st_mtim.tv_nsec, y.st.st_mtim.tv_sec, y.st.st_mtim.tv_nsec));
    }
    if (meta && opts.xattrs) {
      if (!x.xattr_error.empty() || !y.xattr_error.empty()) {
        diffs.push_back(fmt::format("xattrs of {} unreadable: a {}, b {}", name, x.xattr_error, y.xattr_error));
      }
      for (const auto& [k, v] : x.xattrs) {
        auto yv = y.xattrs.find(k);
        if (yv == y.xattrs.end()) {
          diffs.push_back(fmt::format("xattr {} of {}: a {}, b missing", k, name, ShowBytes(v)));
        } else if (yv->second != v) {
          diffs.push_back(fmt::format("xattr {} of {}: a {}, b {}", k, name, ShowBytes(v), ShowBytes(yv->second)));
        }
      }
      for (const auto& [k, v] : y.xattrs) {
        if (!x.xattrs.count(k)) diffs.push_back(fmt::format("xattr {} of {}: a missing, b {}", k, name, ShowBytes(v)));
      }
    }
    if (is_link && x.target != y.target) {
      diffs.push_back(fmt::format("symlink target of {}: a {}, b {}", name, Show(x.target), Show(y.target)));
    }
    if ((S_ISCHR(x.st.st_mode) || S_ISBLK(x.st.st_mode)) && x.st.st_rdev != y.st.st_rdev) {
      diffs.push_back(fmt::format("rdev of {}: a {}:{}, b {}:{}", name, major(x.st.st_rdev), minor(x.st.st_rdev),
                                  major(y.st.st_rdev), minor(y.st.st_rdev)));
    }
    if (S_ISREG(x.st.st_mode)) {
      if (x.st.st_size != y.st.st_size) {
        diffs.push_back(fmt::format("size of {}: a {}, b {}", name, x.st.st_size, y.st.st_size));
      } else {
        std::string error;
        auto off = FirstDifference((a / rel).string(), (b / rel).string(), error);
        if (!error.empty()) diffs.push_back(fmt::format("content of {} unreadable: {}", name, error));
        if (off) diffs.push_back(fmt::format("content of {} differs at offset {}", name, *off));
      }
    }
    if (opts.hardlinks && !is_dir && (x.st.st_nlink > 1 || y.st.st_nlink > 1)) {
      std::string ga = GroupOf(ea, rel, eb), gb = GroupOf(eb, rel, ea);
      if (ga != gb && reported_groups.insert(ga + gb).second) {
        diffs.push_back(fmt::format("hard links of {}: a {}, b {}", name, ga, gb));
      }
    }
  }
  return diffs;
}

std::string JoinDifferences(const std::vector<std::string>& diffs, size_t max_lines) {
  std::string out;
  for (size_t i = 0; i < diffs.size() && i < max_lines; i++) out += diffs[i] + "\n";
  if (diffs.size() > max_lines) out += fmt::format("... and {} more\n", diffs.size() - max_lines);
  return out;
}

}  // namespace fsb::testing
