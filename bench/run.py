#!/usr/bin/env python3
"""fsb vs restic on the same data in the same run; writes bench/RESULTS.md (see bench/README.md)."""
import argparse
import datetime
import os
import platform
import random
import shutil
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FSB = os.environ.get("FSB_BIN", os.path.join(ROOT, "build", "fsb"))  # FSB_BIN: another build's binary
RESTIC = shutil.which("restic")
KEY = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f"


def sh(cmd, **kw):
    return subprocess.run(cmd, check=True, **kw)


def deterministic_random(path, size, iv):
    """AES-CTR keystream with a fixed key: deterministic, incompressible, ~1 GB/s."""
    with open(path, "wb") as out:
        p1 = subprocess.Popen(["openssl", "enc", "-aes-256-ctr", "-K", KEY, "-iv", iv, "-nosalt"],
                              stdin=open("/dev/zero", "rb"), stdout=subprocess.PIPE)
        left = size
        while left > 0:
            chunk = p1.stdout.read(min(left, 1 << 20))
            out.write(chunk)
            left -= len(chunk)
        p1.kill()
        p1.wait()


def make_source(dest, quick):
    tars = [f for f in os.listdir("/usr/src") if f.startswith("linux-source") and f.endswith(".tar.xz")] \
        if os.path.isdir("/usr/src") else []
    if not tars:
        sys.exit("bench: /usr/src/linux-source-*.tar.xz missing: apt-get install linux-source-6.1")
    os.makedirs(dest)
    cmd = ["tar", "-xJf", os.path.join("/usr/src", sorted(tars)[0]), "-C", dest]
    if quick:
        top = sorted(tars)[0][:-len(".tar.xz")]
        cmd += [f"{top}/drivers/net"]
    sh(cmd)


def make_large(dest, quick):
    os.makedirs(dest)
    scale = 8 if quick else 1
    deterministic_random(os.path.join(dest, "random.bin"), (1 << 30) // scale, "00" * 16)
    # Compressible: pseudo-text from a fixed vocabulary.
    rnd = random.Random(7)
    words = [bytes(rnd.choice(b"abcdefghijklmnopqrstuvwxyz") for _ in range(rnd.randint(2, 10))) for _ in range(5000)]
    with open(os.path.join(dest, "text.log"), "wb") as f:
        written = 0
        target = (512 << 20) // scale
        while written < target:
            line = b" ".join(rnd.choice(words) for _ in range(12)) + b"\n"
            block = line * 1  # keep it simple and deterministic
            f.write(block)
            written += len(block)
    # Sparse: 2 GiB apparent, 64 MiB of data in 4 extents.
    sparse = os.path.join(dest, "sparse.img")
    with open(sparse, "wb") as f:
        f.truncate((2 << 30) // scale)
    tmp = sparse + ".part"
    for i in range(4):
        deterministic_random(tmp, (16 << 20) // scale, f"{i + 1:02x}" * 16)
        with open(tmp, "rb") as src, open(sparse, "r+b") as f:
            f.seek(i * ((512 << 20) // scale))
            f.write(src.read())
    os.remove(tmp)


def make_small(dest, quick):
    rnd = random.Random(11)
    n = 20000 if quick else 200000
    for d in range(n // 500):
        sub = os.path.join(dest, f"d{d:04}")
        os.makedirs(sub)
        for i in range(500):
            with open(os.path.join(sub, f"f{i:04}.dat"), "wb") as f:
                f.write(rnd.randbytes(rnd.randint(1024, 8192)))


def files_of(root):
    out = []
    for d, _, fs in os.walk(root):
        for f in fs:
            p = os.path.join(d, f)
            if os.path.isfile(p) and not os.path.islink(p):
                out.append(p)
    return sorted(out)


def change_one_percent(root, round_no, originals):
    """Appends a line to every 100th file; `originals` collects each changed file's first size, for
    undo_changes() (the dataset is kept between bench runs and must not grow with each)."""
    fs = files_of(root)
    step = 100 if len(fs) >= 100 else max(1, len(fs))
    changed = 0
    for p in fs[round_no % step::step]:
        originals.setdefault(p, os.path.getsize(p))
        with open(p, "ab") as f:
            f.write(f"changed in round {round_no}\n".encode())
        changed += 1
    return changed


def undo_changes(originals):
    for p, size in originals.items():
        os.truncate(p, size)
    originals.clear()


# ext4 (this machine's, without a journal) creates files 5-8x slower for ~35 s after many files were
# deleted: the inode allocator scans the recently deleted inodes of a group. A timed restore must not
# follow a bulk delete within that window, or both tools' restore times measure the deletion instead.
# Every tree-sized delete goes through remove_tree(), and settle() waits out the window before a
# timed restore.
SETTLE_SECONDS = 40
_last_bulk_delete = [0.0]


def remove_tree(path):
    if os.path.lexists(path):
        shutil.rmtree(path, ignore_errors=True)
        _last_bulk_delete[0] = time.monotonic()


def settle():
    wait = _last_bulk_delete[0] + SETTLE_SECONDS - time.monotonic()
    if wait > 0:
        print(f"bench: waiting {wait:.0f} s after a bulk delete before a timed restore (see README)", flush=True)
        time.sleep(wait)


def warm(*paths):
    """The same memory state before every timed command: the page cache holds its input (a
    backup's data and repository, a restore's repository, restic's cache) and the program, and
    nothing else. Written data is
    synced, the page cache dropped (as root), and every file under `paths` read back through a
    pipe (GNU tar writing to /dev/null itself reads no file). Without it, later runs found the
    memory full of earlier runs' output and paid for reclaiming it (a `source` restore by fsb:
    2.6, 2.6, 3.6, 4.1 s in a row; 2.6, 2.7, 3.0 s with the drop), this VM reclaims cold page
    cache in the background (DAMON), and fsb drops from the cache what it had to read from disk."""
    os.sync()
    if os.geteuid() == 0:
        with open("/proc/sys/vm/drop_caches", "w") as f:
            f.write("1\n")
    for path in paths:
        if os.path.isdir(path):
            sh(["sh", "-c", f"tar -cf - -C '{path}' . | cat > /dev/null"])
        elif os.path.isfile(path):
            sh(["cat", path], stdout=subprocess.DEVNULL)


def program_files(exe):
    """An executable and the shared libraries it loads (ldd), so that the page-cache drop does not
    make a short command's time mostly program loading."""
    out = subprocess.run(["ldd", exe], capture_output=True, text=True).stdout
    libs = [w for line in out.splitlines() for w in line.split() if w.startswith("/")]
    return [exe] + libs


class RestoreFs:
    """Where a dataset's timed restores go: a file system made for that dataset, ext4 with mkfs's
    defaults (a journal, as on a node's disk), on a loop device (direct I/O, so its writeback is not
    copied twice) over a sparse image in the bench directory. Each dataset gets a new one, so every
    restore starts on the same empty file system whatever ran before. This machine's own disk is
    ext4 without a journal, where the inode allocator skips inodes deleted in the last 60 s, or
    360 s while their inode table block is dirty (`recently_deleted()`, fs/ext4/ialloc.c, only
    without a journal): restore times there depended on what the bench had deleted minutes
    earlier (fsb's `small` restore: 15.7-16.2 s in the bench, 4.3-5.1 s by hand).
    Without root, mkfs.ext4 or losetup the restores go to the bench directory, after settle()."""

    SIZE = 24 << 30  # sparse; ~1.5 M inodes: 4 restores of `small` need 0.8 M

    def __init__(self, work):
        self.work = work
        self.image = os.path.join(work, "restore-fs.img")
        self.mnt = os.path.join(work, "restore-fs")
        self.dev = None
        self.what = "the bench directory's file system (no file system could be made: not root?)"

    def fresh(self, name):
        """An empty directory for the restores of dataset `name`."""
        self.stop()
        if os.geteuid() == 0 and shutil.which("mkfs.ext4") and shutil.which("losetup"):
            try:
                with open(self.image, "wb") as f:
                    f.truncate(self.SIZE)
                sh(["mkfs.ext4", "-q", "-F", self.image], stdout=subprocess.DEVNULL)
                self.dev = subprocess.run(["losetup", "--find", "--show", "--direct-io=on", self.image],
                                          check=True, capture_output=True, text=True).stdout.strip()
                os.makedirs(self.mnt, exist_ok=True)
                sh(["mount", self.dev, self.mnt])
                self.what = ("ext4 made fresh for each dataset by `mkfs.ext4` with its defaults (journal), "
                             "on a loop device with direct I/O over a sparse image")
                os.makedirs(os.path.join(self.mnt, name))
                return os.path.join(self.mnt, name)
            except (subprocess.CalledProcessError, OSError) as e:
                print(f"bench: no file system for the restores ({e}); restoring into {self.work}", flush=True)
                self.stop()
        # What an earlier run left is deleted now, before the dataset's backups: a timed restore
        # is minutes away (settle() still guards it).
        path = os.path.join(self.work, "restores", name)
        remove_tree(path)
        return path

    def done(self, path):
        """The restores in `path` are checked: deleted on the bench directory's file system (disk
        use stays bounded by one dataset's restores), left to the next fresh() otherwise."""
        if not self.dev:
            remove_tree(path)

    def stop(self):
        if os.path.ismount(self.mnt):
            subprocess.run(["umount", self.mnt], check=False)
        if self.dev:
            subprocess.run(["losetup", "-d", self.dev], check=False)
            self.dev = None
        if os.path.exists(self.image):
            os.remove(self.image)


def timed(cmd, cwd=None, env=None, may_time_out=False):
    """(wall seconds, peak RSS KiB) of cmd; None when may_time_out and `timeout` killed it (124).
    Dirty pages of the commands before are written out first, so that no command pays for the
    writeback of another's output."""
    os.sync()
    with tempfile.NamedTemporaryFile("r") as t:
        full = ["/usr/bin/time", "-f", "%e %M", "-o", t.name] + cmd
        r = subprocess.run(full, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        if may_time_out and r.returncode == 124:
            return None
        if r.returncode != 0:
            sys.exit(f"bench: command failed ({r.returncode}): {' '.join(cmd)}\n{r.stderr.decode()[-2000:]}")
        secs, rss = t.read().split()[-2:]
        return float(secs), int(rss)


class Tool:
    def __init__(self, name, work, pwfile):
        self.name = name
        self.env = dict(os.environ, RESTIC_PASSWORD_FILE=pwfile, FSB_PASSWORD_FILE=pwfile)
        self.cache = os.path.join(work, "restic-cache")
        self.extra = []  # backend flags (--cacert ...)

    def own_files(self):
        """What the tool reads besides its input: its program, and restic its cache."""
        if self.name == "restic":
            return program_files(RESTIC) + [self.cache]
        return program_files(FSB)

    def cmd(self, repo, *args):
        if self.name == "fsb":
            return [FSB, "-r", repo, "-q"] + self.extra + list(args)
        return [RESTIC, "-r", repo, "--cache-dir", self.cache, "-q"] + self.extra + list(args)

    def init(self, repo):
        shutil.rmtree(repo, ignore_errors=True)
        sh(self.cmd(repo, "init"), env=self.env, stdout=subprocess.DEVNULL)

    def backup_cmd(self, repo):
        return self.cmd(repo, "backup", "--host", "bench", ".")

    def backup(self, repo, data):
        # The repository too: a backup reads its index, snapshots and parent trees (restic from
        # its cache, fsb from the repository, which is as local as restic's cache here).
        warm(data, repo, *self.own_files())
        return timed(self.backup_cmd(repo), cwd=data, env=self.env)

    def restore(self, repo, target, repo_dir=None):
        """`target` must not exist: a fresh directory, never one emptied just before (see settle()).
        `repo_dir`: where the repository's files are, when `repo` is not a path."""
        if os.path.lexists(target):
            sys.exit(f"bench: restore target {target} exists")
        settle()
        warm(repo_dir or repo, *self.own_files())
        return timed(self.cmd(repo, "restore", "latest", "--target", target), env=self.env)


S3_LAUNCHER = r"""
const [moduleDir, dir, bucket, key, cert] = process.argv.slice(2);
const S3rver = require(moduleDir);
require('fs').mkdirSync(dir, { recursive: true });
new S3rver({ address: '127.0.0.1', port: 0, directory: dir, silent: true, vhostBuckets: false,
             configureBuckets: [{ name: bucket, configs: [] }],
             key: require('fs').readFileSync(key), cert: require('fs').readFileSync(cert) })
  .run().then((a) => console.log(`listening ${a.address}:${a.port}`));
"""


class S3rver:
    """s3rver 3.7.1 (installed by scripts/setup into .cache/npm) over TLS on 127.0.0.1: restic 0.14
    only works with s3rver over TLS, so both tools use https with a CA made here."""

    def __init__(self, work):
        self.dir = os.path.join(work, "s3")
        shutil.rmtree(self.dir, ignore_errors=True)
        os.makedirs(self.dir)
        self.key, self.crt = os.path.join(self.dir, "tls.key"), os.path.join(self.dir, "tls.crt")
        sh(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", self.key, "-out", self.crt,
            "-days", "2", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"],
           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        module = os.path.join(ROOT, ".cache", "npm", "node_modules", "s3rver")
        if not os.path.exists(module):
            sys.exit("bench: s3rver missing: run scripts/setup")
        launcher = os.path.join(self.dir, "launch.js")
        with open(launcher, "w") as f:
            f.write(S3_LAUNCHER)
        self.proc = subprocess.Popen(["node", "--openssl-legacy-provider", launcher, module,
                                      os.path.join(self.dir, "data"), "bench", self.key, self.crt],
                                     stdout=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline()
        if "listening" not in line:
            sys.exit(f"bench: s3rver did not start: {line}")
        self.port = int(line.strip().rsplit(":", 1)[1])

    def repo(self, name):
        return f"s3:https://127.0.0.1:{self.port}/bench/{name}"

    def stop(self):
        self.proc.kill()
        self.proc.wait()


def bench_s3(work, tools, data, runs, restore_runs, restore_fs):
    """Initial backup and restore of `data` into s3rver, both tools over TLS, best of `runs`."""
    server = S3rver(work)
    res = {t.name: {} for t in tools}
    restores = restore_fs.fresh("s3")
    remove_tree(os.path.join(work, "restore-s3-fsb"))  # the layout before restores/
    remove_tree(os.path.join(work, "restore-s3-restic"))
    try:
        for t in tools:
            t.env.update(AWS_ACCESS_KEY_ID="S3RVER", AWS_SECRET_ACCESS_KEY="S3RVER", AWS_CA_BUNDLE=server.crt)
            t.extra = ["--cacert", server.crt] + (["-o", "s3.region=us-east-1"] if t.name == "restic" else [])
        for op in ["initial backup (s3)", "restore (s3)"]:
            for r in range(restore_runs if op.startswith("restore") else runs):
                for t in tools:
                    repo = server.repo(f"{t.name}-{r}" if op.startswith("initial") else f"{t.name}-0")
                    if op.startswith("initial"):
                        sh(t.cmd(repo, "init"), env=t.env, stdout=subprocess.DEVNULL)
                        m = t.backup(repo, data)
                    else:
                        m = t.restore(repo, os.path.join(restores, f"{t.name}-{r}"), server.dir)
                    best = res[t.name].get(op)
                    res[t.name][op] = (min(best[0], m[0]) if best else m[0], max(best[1], m[1]) if best else m[1])
                    print(f"bench: s3      {op:18} {t.name:6} run {r + 1}: {m[0]:7.2f} s  {m[1] / 1024:7.1f} MiB",
                          flush=True)
        chk = subprocess.run(tools[0].cmd(server.repo("fsb-0"), "check", "--read-data"), env=tools[0].env,
                             capture_output=True, text=True)
        if chk.returncode != 0:
            sys.exit(f"bench: restic check --read-data FAILED on fsb's S3 repository:\n{chk.stdout}{chk.stderr}")
        diff = subprocess.run(["diff", "-r", "-q", "--no-dereference", data, os.path.join(restores, f"fsb-{restore_runs - 1}")],
                              capture_output=True, text=True)
        if diff.returncode != 0:
            sys.exit(f"bench: fsb's S3 restore differs from the source:\n{diff.stdout[-3000:]}")
        restore_fs.done(restores)
    finally:
        server.stop()
        for t in tools:
            t.extra = []
    return [("source via s3rver (TLS)", op, res["restic"][op], res["fsb"][op]) for op in res["fsb"]]


# The `many` dataset's generator: C, because Python's os.open + close costs ~10 µs a file (100 s for
# 10 M) against ~5 µs of kernel time here. Files are empty except the first of each directory,
# which holds a few distinct bytes: 10 M files add about N/1000 data blobs, so what grows with the
# file count is the tree and walker state, not the index.
MANY_GEN_C = r"""
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>
int main(int argc, char** argv) {
  if (argc != 4) { fprintf(stderr, "usage: gen ROOT DIRS FILES_PER_DIR\n"); return 2; }
  long dirs = atol(argv[2]), per = atol(argv[3]);
  if (mkdir(argv[1], 0755) != 0) { perror(argv[1]); return 1; }
  int root = open(argv[1], O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (root < 0) { perror(argv[1]); return 1; }
  char name[64];
  for (long d = 0; d < dirs; d++) {
    snprintf(name, sizeof name, "d%05ld", d);
    if (mkdirat(root, name, 0755) != 0) { perror(name); return 1; }
    int dfd = openat(root, name, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0) { perror(name); return 1; }
    for (long f = 0; f < per; f++) {
      snprintf(name, sizeof name, "f%04ld", f);
      int fd = openat(dfd, name, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
      if (fd < 0) { perror(name); return 1; }
      if (f == 0) {
        int n = snprintf(name, sizeof name, "directory %ld\n", d);
        if (write(fd, name, n) != n) { perror("write"); return 1; }
      }
      close(fd);
    }
    close(dfd);
  }
  return close(root);
}
"""


def many_mount(work):
    """A tmpfs for the `many` tree when running as root (nr_inodes=0: /dev/shm's default inode limit
    is half the RAM pages, 3 M here). An empty file there costs ~1 KiB of unreclaimable kernel memory
    (inode + dentry), 10 GiB for 10 M files, and no data pages. Without root: a directory in `work`."""
    mnt = os.path.join(work, "many-tmpfs")
    os.makedirs(mnt, exist_ok=True)
    if os.geteuid() == 0:
        if not os.path.ismount(mnt):
            sh(["mount", "-t", "tmpfs", "-o", "size=4g,nr_inodes=0,mode=0755", "fsb-bench-many", mnt])
        return mnt, True
    print("bench: many: not root, so the tree goes on the disk under the bench directory", flush=True)
    return mnt, False


def bench_many(work, tools, n_files, runs, restic_timeout):
    """Initial backup of a tree of n_files (nearly all empty) files, 1000 per directory: peak RSS
    and time per tool. The tree lives on a tmpfs for the run only and is deleted afterwards."""
    per = min(1000, n_files)
    dirs = max(1, n_files // per)
    n_files = dirs * per
    gen = os.path.join(work, "many-gen")
    if not os.access(gen, os.X_OK):
        with open(gen + ".c", "w") as f:
            f.write(MANY_GEN_C)
        sh(["cc", "-O2", "-o", gen, gen + ".c"])
    mnt, mounted = many_mount(work)
    data = os.path.join(mnt, f"tree-{n_files}")
    label = f"many ({n_files / 1e6:g} M files, {dirs} dirs)"
    res = {}
    try:
        for old in os.listdir(mnt):
            remove_tree(os.path.join(mnt, old))  # another size's tree
        t0 = time.monotonic()
        sh([gen, data, str(dirs), str(per)])
        gen_s = time.monotonic() - t0
        print(f"bench: many: generated {n_files} files in {gen_s:.1f} s ({gen_s / n_files * 1e6:.2f} µs a file)",
              flush=True)
        for r in range(runs):
            for t in tools:
                repo = os.path.join(work, "repos", f"{t.name}-many")
                t.init(repo)
                cmd = t.backup_cmd(repo)
                if t.name == "restic" and restic_timeout:
                    cmd = ["timeout", str(restic_timeout)] + cmd
                m = timed(cmd, cwd=data, env=t.env, may_time_out=t.name == "restic")
                if m is None:
                    print(f"bench: many    initial backup     restic run {r + 1}: killed after {restic_timeout} s",
                          flush=True)
                    m = (float("inf"), 0)
                best = res.get(t.name)
                res[t.name] = (min(best[0], m[0]) if best else m[0], max(best[1], m[1]) if best else m[1])
                print(f"bench: many    initial backup     {t.name:6} run {r + 1}: {m[0]:7.2f} s  {m[1] / 1024:7.1f} MiB",
                      flush=True)
        chk = subprocess.run([RESTIC, "-r", os.path.join(work, "repos", "fsb-many"), "--no-cache", "check",
                              "--read-data"], env=tools[0].env, capture_output=True, text=True)
        if chk.returncode != 0 or "no errors were found" not in chk.stdout:
            sys.exit(f"bench: restic check --read-data FAILED on fsb's repository:\n{chk.stdout}\n{chk.stderr}")
    finally:
        # 10 M inodes on the tmpfs hold ~10 GiB of kernel memory: never leave them behind.
        remove_tree(data)
        if mounted:
            subprocess.run(["umount", mnt])
        for t in tools:
            remove_tree(os.path.join(work, "repos", f"{t.name}-many"))
    return [(label, "initial backup", res.get("restic", (float("inf"), 0)), res["fsb"])]


def count_packs(repo):
    return sum(len(fs) for d, _, fs in os.walk(os.path.join(repo, "data")))


def make_prune_repo(work, n, env):
    """The prune dataset: a source of n files of 32-96 KiB, backed up 10 times by fsb with 256 KiB
    packs (FSB_TEST_PACK_SIZE_BYTES; restic's minimum is 4 MiB) while 15 % of the files change
    between backups, then `forget --keep-last 5`. n = 19 000 gives about 10 000 packs, made once
    and reused; each run prunes fresh copies."""
    base = os.path.join(work, "repos", f"prune-base-{n}")
    marker = base + ".done"
    if os.path.exists(marker):
        return base
    src = os.path.join(work, "data", "prune-src")
    shutil.rmtree(src, ignore_errors=True)
    shutil.rmtree(base, ignore_errors=True)
    rnd = random.Random(23)

    def write(i, r):
        d = os.path.join(src, f"d{i // 100:03}")
        os.makedirs(d, exist_ok=True)
        with open(os.path.join(d, f"f{i % 100:02}"), "wb") as f:
            f.write(random.Random(i * 1000 + r).randbytes(32768 + rnd.randrange(65536)))

    for i in range(n):
        write(i, 0)
    gen_env = dict(env, FSB_TEST_PACK_SIZE_BYTES=str(256 << 10))
    sh([FSB, "-r", base, "-q", "init"], env=gen_env, stdout=subprocess.DEVNULL)
    for r in range(10):
        if r > 0:
            for i in rnd.sample(range(n), n * 15 // 100):
                write(i, r)
        sh([FSB, "-r", base, "-q", "backup", "--host", "bench", "."], cwd=src, env=gen_env)
    sh([FSB, "-r", base, "-q", "forget", "--keep-last", "5"], env=gen_env)
    with open(marker, "w") as f:
        f.write(f"{count_packs(base)} packs\n")
    return base


def bench_prune(work, tools, n_files, runs):
    """fsb prune vs restic prune on identical copies of one repository (both with --pack-size 4,
    so that the 256 KiB packs count as large enough: restic repacks packs below pack size / 25)."""
    base = make_prune_repo(work, n_files, tools[0].env)
    packs = count_packs(base)
    res = {}
    for r in range(runs):
        for t in tools:
            repo = os.path.join(work, "repos", f"prune-{t.name}")
            shutil.rmtree(repo, ignore_errors=True)
            shutil.rmtree(t.cache, ignore_errors=True)  # restic starts with a cold cache, as fsb has none
            sh(["cp", "-a", base, repo])
            m = timed(t.cmd(repo, "--pack-size", "4", "prune"), env=t.env)
            best = res.get(t.name)
            res[t.name] = (min(best[0], m[0]) if best else m[0], max(best[1], m[1]) if best else m[1])
            print(f"bench: prune   {packs} packs       {t.name:6} run {r + 1}: {m[0]:7.2f} s  {m[1] / 1024:7.1f} MiB",
                  flush=True)
    fsb_repo, restic_repo = (os.path.join(work, "repos", f"prune-{n}") for n in ("fsb", "restic"))
    chk = subprocess.run([RESTIC, "-r", fsb_repo, "--no-cache", "check", "--read-data"], env=tools[0].env,
                         capture_output=True, text=True)
    if chk.returncode != 0 or "no errors were found" not in chk.stdout:
        sys.exit(f"bench: restic check --read-data FAILED on fsb's pruned repository:\n{chk.stdout}\n{chk.stderr}")

    def blobs(repo):
        out = subprocess.run([RESTIC, "-r", repo, "--no-cache", "list", "blobs"], env=tools[0].env,
                             capture_output=True, text=True, check=True).stdout
        return sorted(out.split("\n"))

    same = blobs(fsb_repo) == blobs(restic_repo)
    print(f"bench: prune: index blob sets after fsb and restic prune {'are the same' if same else 'DIFFER'}",
          flush=True)
    return [(f"prune ({packs} packs, forget 5 of 10)", "prune", res["restic"], res["fsb"])]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="small datasets (smoke run)")
    ap.add_argument("--datasets", default="source,large,small,s3,prune",
                    help="any of source, large, small, s3 (the source dataset through s3rver), prune, "
                         "many (opt-in: initial backup of --many-files nearly empty files on a tmpfs)")
    ap.add_argument("--many-files", type=int, default=10_000_000,
                    help="files in the many dataset (1000 a directory; 1000000 is a quick run)")
    ap.add_argument("--many-restic-timeout", type=int, default=3600,
                    help="seconds after which restic's backup of the many dataset is killed (0: never)")
    ap.add_argument("--runs", type=int, default=2)
    # Restores vary more between runs on this VM (the first touch of page-cache memory the host
    # had taken back costs up to 2x: perf shows the copy into new page-cache folios at 0.8 GB/s).
    ap.add_argument("--restore-runs", type=int, default=3)
    ap.add_argument("--prune-files", type=int, default=0,
                    help="files in the prune dataset (default 19000, about 10 000 packs; 1900 with --quick)")
    ap.add_argument("--out", default=os.path.join(ROOT, "bench", "RESULTS.md"))
    args = ap.parse_args()
    if not RESTIC:
        sys.exit("bench: restic not found (scripts/setup installs it)")
    if not os.access(FSB, os.X_OK):
        sys.exit(f"bench: {FSB} missing: build first")
    work = os.path.join(os.environ.get("FSB_BENCH_DIR", "/tmp"), "fsb-bench" + ("-quick" if args.quick else ""))
    os.makedirs(work, exist_ok=True)
    pwfile = os.path.join(work, "password")
    with open(pwfile, "w") as f:
        f.write("bench-password\n")
    tools = [Tool("restic", work, pwfile), Tool("fsb", work, pwfile)]
    rows = []
    restore_fs = RestoreFs(work)
    try:
        run_datasets(args, work, tools, restore_fs, rows)
    finally:
        restore_fs.stop()
    write_results(args, rows, restore_fs.what)


def run_datasets(args, work, tools, restore_fs, rows):
    makers = {"source": make_source, "large": make_large, "small": make_small}
    for ds in args.datasets.split(","):
        if ds == "many":
            rows += bench_many(work, tools, args.many_files, args.runs, args.many_restic_timeout)
            continue
        if ds == "prune":
            rows += bench_prune(work, tools, args.prune_files or (1900 if args.quick else 19000), args.runs)
            continue
        if ds == "s3":
            src = os.path.join(work, "data", "source")
            if not os.path.isdir(src):
                make_source(src, args.quick)
            entries = os.listdir(src)
            rows += bench_s3(work, tools, os.path.join(src, entries[0]) if len(entries) == 1 else src, args.runs,
                             args.restore_runs, restore_fs)
            continue
        data = os.path.join(work, "data", ds)
        if not os.path.isdir(data):
            print(f"bench: generating {ds} ...", flush=True)
            makers[ds](data, args.quick)
        # The source tree's single top directory is what gets backed up.
        entries = os.listdir(data)
        if ds == "source" and len(entries) == 1:
            data = os.path.join(data, entries[0])
        res = {t.name: {} for t in tools}
        repos = {t.name: os.path.join(work, "repos", f"{t.name}-{ds}") for t in tools}
        # Restores go to fresh directories <ds>/<tool>-<run> on the dataset's own file system
        # (see RestoreFs).
        restores = restore_fs.fresh(ds)
        remove_tree(os.path.join(work, "restore-fsb"))  # the layout before restores/
        remove_tree(os.path.join(work, "restore-restic"))
        originals = {}
        for op in ["initial backup", "no-change backup", "1% changed backup", "restore"]:
            for r in range(args.restore_runs if op == "restore" else args.runs):
                if op == "1% changed backup":
                    change_one_percent(data, r + 1, originals)
                for t in tools:
                    if op == "initial backup":
                        t.init(repos[t.name])
                        m = t.backup(repos[t.name], data)
                    elif op == "restore":
                        m = t.restore(repos[t.name], os.path.join(restores, f"{t.name}-{r}"))
                    else:
                        m = t.backup(repos[t.name], data)
                    best = res[t.name].get(op)
                    res[t.name][op] = (min(best[0], m[0]) if best else m[0], max(best[1], m[1]) if best else m[1])
                    print(f"bench: {ds:7} {op:18} {t.name:6} run {r + 1}: {m[0]:7.2f} s  {m[1] / 1024:7.1f} MiB",
                          flush=True)
        # Correctness: restic accepts fsb's repository, and fsb's restore equals the source.
        chk = subprocess.run([RESTIC, "-r", repos["fsb"], "--no-cache", "check", "--read-data"],
                             env=tools[0].env, capture_output=True, text=True)
        if chk.returncode != 0 or "no errors were found" not in chk.stdout:
            sys.exit(f"bench: restic check --read-data FAILED on fsb's repository:\n{chk.stdout}\n{chk.stderr}")
        diff = subprocess.run(["diff", "-r", "-q", "--no-dereference", data,
                               os.path.join(restores, f"fsb-{args.restore_runs - 1}")], capture_output=True, text=True)
        if diff.returncode != 0:
            sys.exit(f"bench: fsb's restore differs from the source:\n{diff.stdout[-3000:]}")
        restore_fs.done(restores)
        undo_changes(originals)  # the next bench run starts from the same data
        for op in res["fsb"]:
            rows.append((ds, op, res["restic"][op], res["fsb"][op]))


def write_results(args, rows, restore_fs_what):
    cpu = "unknown"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / (1 << 30)
    rv = subprocess.run([RESTIC, "version"], capture_output=True, text=True).stdout.strip()
    commit = subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True).stdout.strip()
    lines = [
        "# bench results",
        "",
        f"- command: `python3 bench/run.py{' --quick' if args.quick else ''}` (runs per figure: {args.runs}, restores {args.restore_runs}; best time, max RSS)",
        f"- date: {datetime.datetime.now().isoformat(timespec='seconds')}, fsb commit {commit}",
        f"- machine: {os.cpu_count()} CPUs ({cpu}), {mem:.0f} GiB RAM, kernel {platform.release()}",
        f"- restic: {rv}",
        f"- restore targets: {restore_fs_what}; every timed command starts after a `sync`, a drop of the page cache and a read of its input (`warm()`)",
        "",
        "| dataset | operation | restic s | fsb s | speed-up (restic/fsb) | restic peak RSS MiB | fsb peak RSS MiB |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for ds, op, r, f in rows:
        if r[0] == float("inf"):  # restic killed by --many-restic-timeout
            lines.append(f"| {ds} | {op} | > {args.many_restic_timeout} | {f[0]:.2f} | - | - | {f[1] / 1024:.0f} |")
            continue
        lines.append(f"| {ds} | {op} | {r[0]:.2f} | {f[0]:.2f} | {r[0] / max(f[0], 0.01):.2f}x | "
                     f"{r[1] / 1024:.0f} | {f[1] / 1024:.0f} |")
    lines += ["", "Checked after the runs: `restic check --read-data` on fsb's repositories passed, and fsb's "
              "restores are byte-identical to the sources (`diff -r`).", ""]
    with open(args.out, "w") as f:
        f.write("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
