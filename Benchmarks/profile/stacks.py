#!/usr/bin/env python3
"""Reads `perf script -F comm,tid,ip,sym | swift demangle --simplified` output of the node.

  stacks.py summary FILE [N]         share per thread, top self and inclusive frames
  stacks.py tree FILE FRAME [DEPTH]  call tree below the first frame containing FRAME
  stacks.py attribute FILE [N]       every sample charged to its first frame of Waakvlam's own
                                     code (for malloc or swift_retain probes: who allocates)
"""
import collections, re, signal, sys

signal.signal(signal.SIGPIPE, signal.SIG_DFL)  # quiet when piped into head

# Frames of the Swift runtime, the standard library, libc and OpenSSL: `attribute` skips them.
RUNTIME = re.compile(
    r"^(specialized |static |merged |outlined |protocol witness |partial apply |thunk |reabstraction |implicit closure )*"
    r"(_|swift|malloc|free|cfree|CRYPTO_|OPENSSL_|\[unknown\]|destroy for|initializeWithCopy|assignWithCopy|"
    r"initializeWithTake|initializeBufferWithCopyOfBuffer|default argument|tuple_|Array|ContiguousArray|String|"
    r"Substring|Dictionary|Set|Sequence|Collection|BidirectionalCollection|RangeReplaceableCollection|"
    r"MutableCollection|UnsafeMutablePointer|Hasher|DefaultStringInterpolation|closure #\d+ in (Array|String))")


def load(path):
    """The samples as (thread name without its number, [frames, innermost first])."""
    samples, current = [], None
    for line in open(path, errors="replace"):
        line = line.rstrip("\n")
        if not line.strip():
            if current:
                samples.append(current)
            current = None
        elif line[0] in "\t ":
            if current is not None:
                frame = re.sub(r"^\s*[0-9a-f]+ ", "", line)
                current[1].append(re.sub(r"\+0x[0-9a-f]+$", "", frame))
        else:
            if current:
                samples.append(current)
            current = (re.sub(r"-?\d+$", "", line.split()[0]), [])
    if current:
        samples.append(current)
    return samples


def percent(count, total):
    return f"{100 * count / total:5.1f}%"


def summary(samples, n):
    total = len(samples)
    print(f"{total} samples")
    for name, count in collections.Counter(s[0] for s in samples).most_common():
        print(f"  {percent(count, total)} {name}")
    print("self:")
    for frame, count in collections.Counter(s[1][0] if s[1] else "?" for s in samples).most_common(n):
        print(f"  {percent(count, total)} {frame[:150]}")
    print("inclusive:")
    inclusive = collections.Counter(f for s in samples for f in set(s[1]))
    for frame, count in inclusive.most_common(n):
        print(f"  {percent(count, total)} {frame[:150]}")


def tree(samples, root, depth, minimum=0.2):
    total = len(samples)
    counts = collections.Counter()
    below = 0
    for _, frames in samples:
        outermost_first = frames[::-1]
        at = next((i for i, f in enumerate(outermost_first) if root in f), None)
        if at is None:
            continue
        below += 1
        path = outermost_first[at + 1:at + 1 + depth]
        for d in range(1, len(path) + 1):
            counts[tuple(path[:d])] += 1
    print(f"{total} samples, {percent(below, total)} below '{root}'")

    def show(prefix):
        children = sorted((k for k in counts if len(k) == len(prefix) + 1 and k[:-1] == prefix), key=lambda k: -counts[k])
        for key in children:
            if 100 * counts[key] / total < minimum:
                continue
            print("  " * len(prefix) + f"{percent(counts[key], total)} {key[-1][:140]}")
            show(key)
    show(())


def attribute(samples, n):
    total = len(samples)
    first, pair = collections.Counter(), collections.Counter()
    for _, frames in samples:
        own = [f for f in frames if not RUNTIME.match(f)] + ["?", "?"]
        first[own[0]] += 1
        pair[(own[0], own[1])] += 1
    print(f"{total} samples, by first own frame:")
    for frame, count in first.most_common(n):
        print(f"  {percent(count, total)} {frame[:140]}")
    print("with its caller:")
    for (frame, caller), count in pair.most_common(n):
        print(f"  {percent(count, total)} {frame[:90]}  <-  {caller[:80]}")


if __name__ == "__main__":
    if len(sys.argv) < 3 or sys.argv[1] not in ("summary", "tree", "attribute"):
        sys.exit(__doc__)
    command, samples = sys.argv[1], load(sys.argv[2])
    if command == "tree":
        tree(samples, sys.argv[3], int(sys.argv[4]) if len(sys.argv) > 4 else 3)
    else:
        (summary if command == "summary" else attribute)(samples, int(sys.argv[3]) if len(sys.argv) > 3 else 40)
