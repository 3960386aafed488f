#!/usr/bin/env python3
"""The `layering` test: fails when a module includes a module it may not use (CONVENTIONS.md §1).

Usage: layering_test.py SOURCE_ROOT [--self-test]
"""
import os
import re
import sys

# module -> modules it may include (besides itself). The same table as the CMake link lists.
ALLOWED = {
    "base": set(),
    "repo": {"base"},
    "hostpath": {"base"},
    "uploader": {"repo", "base"},
    "kube": {"base"},
    "access": {"kube", "repo", "base"},
    "agent": {"access", "uploader", "hostpath", "kube", "repo", "base"},
    "coordinator": {"access", "kube", "repo", "base"},
    "cli": {"agent", "coordinator", "access", "uploader", "hostpath", "kube", "repo", "base"},
}
INCLUDE = re.compile(r'^\s*#\s*include\s+"([^"]+)"', re.M)


def violations(root):
    found = []
    for module, allowed in ALLOWED.items():
        top = os.path.join(root, module)
        for dirpath, _, files in os.walk(top):
            for f in files:
                if not f.endswith((".h", ".cc")):
                    continue
                path = os.path.join(dirpath, f)
                with open(path, encoding="utf-8", errors="replace") as fh:
                    text = fh.read()
                for inc in INCLUDE.findall(text):
                    target = inc.split("/", 1)[0]
                    if target not in ALLOWED:
                        continue  # a system or third-party header
                    if target != module and target not in allowed:
                        found.append(f"{os.path.relpath(path, root)}: {module} may not include {inc}")
                    # internal/ headers are private to their module
                    if "/internal/" in inc and target != module:
                        found.append(f"{os.path.relpath(path, root)}: {inc} is private to {target}")
    return found


def self_test():
    import tempfile
    with tempfile.TemporaryDirectory() as d:
        os.makedirs(os.path.join(d, "repo"))
        with open(os.path.join(d, "repo", "x.cc"), "w") as fh:
            fh.write('#include "uploader/backup.h"\n#include "base/status.h"\n')
        v = violations(d)
        assert len(v) == 1 and "repo may not include uploader/backup.h" in v[0], v


def main():
    root = sys.argv[1]
    self_test()  # the checker itself must catch a planted violation
    v = violations(root)
    for line in v:
        print(line)
    if v:
        print(f"layering: {len(v)} forbidden include(s)")
        return 1
    print("layering: ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
