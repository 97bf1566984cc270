#!/usr/bin/env python3
"""ABI checks against Debian's PVM 3.4.6.

1. Constants: every macro Debian's pvm3.h defines with a value is printed by a
   generated C program compiled once with Debian's header and once with ours;
   the outputs must be identical.
2. Declarations: every function Debian's header declares is declared by ours
   (a C file referencing each one compiles against our header).
3. Symbols: every pvm_* function and public global that Debian's
   libpvm3.so.3 (and libgpvm3.so.3) exports is exported by ours.

usage: check_abi.py BUILD_DIR SOURCE_DIR
"""
import os
import re
import subprocess
import sys
import tempfile

BUILD, SRC = sys.argv[1], sys.argv[2]
DEB_H = "/usr/include/pvm3.h"
DEB_LIBS = ["/usr/lib/x86_64-linux-gnu/libpvm3.so.3", "/usr/lib/x86_64-linux-gnu/libgpvm3.so.3"]
OUR_INC = os.path.join(SRC, "pvmcompat", "include")
OUR_LIBS = [os.path.join(BUILD, "lib", "libpvm3.so.3"), os.path.join(BUILD, "lib", "libgpvm3.so.3")]
PUBLIC_GLOBALS = {"pvm_errno", "pvm_nerr", "pvm_errlist"}


def run(cmd, **kw):
    return subprocess.run(cmd, check=True, capture_output=True, text=True, **kw)


def main():
    if not os.path.exists(DEB_H):
        print("SKIP: Debian's pvm-dev is not installed; run scripts/setup.sh")
        return 77
    failures = 0
    text = open(DEB_H).read()
    # Macros with a value, excluding function-like macros and include guards.
    names = []
    for m in re.finditer(r"^#define\s+(\w+)(\s+|\\\n)(?!.*\()", text, re.M):
        n = m.group(1)
        if n.startswith("_") or n in ("PVMTMPNAMFUN",) or n in names:
            continue
        names.append(n)
    with tempfile.TemporaryDirectory() as d:
        prog = os.path.join(d, "consts.c")
        with open(prog, "w") as f:
            f.write("#include <stdio.h>\n#include <pvm3.h>\n"
                    "#define P(x) _Generic((x), char*: printf(\"%s=%s\\n\", #x, (char*)(x)), "
                    "default: printf(\"%s=%lld\\n\", #x, (long long)(x)))\nint main(void){\n")
            for n in names:
                f.write(f"#ifdef {n}\nP({n});\n#else\nprintf(\"{n} MISSING\\n\");\n#endif\n")
            # Function-like macros: compare their results on sample inputs.
            f.write("printf(\"MaxDirectIndex=%u\\n\", PvmMboxMaxDirectIndex);\n"
                    "printf(\"DirectIndex(5)=%d\\n\", PvmMboxDirectIndex(5));\n"
                    "printf(\"DirectIndexOf=%u\\n\", PvmMboxDirectIndexOf(0x12345678));\n")
            f.write("return 0;}\n")
        outs = []
        for inc in ("/usr/include", OUR_INC):
            exe = os.path.join(d, "c_" + str(len(outs)))
            run(["cc", "-w", "-I", inc, "-o", exe, prog])
            outs.append(run([exe]).stdout)
        if outs[0] != outs[1]:
            failures += 1
            a, b = outs[0].splitlines(), outs[1].splitlines()
            for x, y in zip(a, b):
                if x != y:
                    print(f"constant differs: Debian {x}  mpvm {y}")
        else:
            print(f"ok   {len(names)} constants identical to Debian's pvm3.h")

        # Every declared function is declared by ours with a compatible type.
        funcs = sorted(set(re.findall(r"^\s*(?:int|char|void)\s*\*?\s*\(?\*?(pvm\w+|Pvm\w+)\s", text, re.M)))
        decl = os.path.join(d, "decl.c")
        with open(decl, "w") as f:
            f.write("#include <pvm3.h>\nvoid *refs[] = {\n")
            f.write(",\n".join(f"(void*){fn}" for fn in funcs if fn not in ("pvmtmpnam",)))
            f.write("};\n")
        try:
            run(["cc", "-DPVM33COMPAT", "-Werror=implicit-function-declaration", "-c", "-I", OUR_INC, "-o",
                 os.path.join(d, "decl.o"), decl])
            print(f"ok   {len(funcs)} functions declared by Debian's header are declared by ours")
        except subprocess.CalledProcessError as e:
            failures += 1
            print("declarations missing:\n" + e.stderr)

    def exported(libs):
        syms = set()
        for lib in libs:
            for line in run(["nm", "-D", "--defined-only", lib]).stdout.splitlines():
                parts = line.split()
                if len(parts) == 3 and parts[1] in "TDBW":
                    syms.add(parts[2].split("@")[0])
        return syms

    deb, ours = exported(DEB_LIBS), exported(OUR_LIBS)
    wanted = {s for s in deb if s.startswith("pvm_") or s in PUBLIC_GLOBALS or
              s in ("PvmMax", "PvmMin", "PvmSum", "PvmProduct")}
    missing = sorted(wanted - ours)
    if missing:
        failures += 1
        print("exported by Debian but not by mpvm: " + " ".join(missing))
    else:
        print(f"ok   all {len(wanted)} pvm_* symbols and public globals Debian exports are exported")
    extra = sorted(s for s in ours if not (s.startswith("pvm") or s.startswith("Pvm") or
                                           s.startswith("mpvm_") or s == "lpvmerr"))
    if extra:
        failures += 1
        print("mpvm exports non-PVM symbols: " + " ".join(extra[:20]))
    else:
        print("ok   libpvm3 exports only PVM names (and mpvm_* extensions)")
    print(f"{4 - failures} passed, {failures} failed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
