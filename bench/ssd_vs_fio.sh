#!/usr/bin/env bash
# The SSD engine (build/bench/ssd_engine) against fio on the same directory and file size
# (DESIGN.md section 7; the protocol of shared/reference/offload-ssd-and-pinned-memory.md 5a):
# read and write at 128K, 1M and 8M blocks x queue depth 1, 8 and 32. fio runs io_uring with
# O_DIRECT on a file preallocated with fallocate and written once before timing; the engine does
# the same with its own scratch file (its untimed first pass). Two fio anchors: as it comes
# (`fio --ioengine=io_uring --direct=1`, the anchor of the ratio) and with --fixedbufs
# --registerfiles, which registers its buffers and file as the engine does. Each repeat runs the
# three once each, who goes first rotating; medians over the repeats. Prints one line per figure
# with the GiB/s of each and engine/fio, then the best point of each direction with the I/O
# thread's CPU (a fraction of one core; it computes every extent's CRC32C, shown apart).
#
#   bench/ssd_vs_fio.sh /var/tmp/seqmesh-bench [build dir]     (REPEATS=5 SIZE_MIB=1024)
set -euo pipefail
dir=${1:?usage: bench/ssd_vs_fio.sh DIR [build dir] (DIR on a disk file system, not tmpfs)}
build=${2:-build}
repeats=${REPEATS:-5}
size_mib=${SIZE_MIB:-1024}
engine=$build/bench/ssd_engine
[ -x "$engine" ] || { echo "ssd_vs_fio: $engine not built (cmake --build $build --target ssd_engine_bench)" >&2; exit 1; }
command -v fio >/dev/null || { echo "ssd_vs_fio: fio not installed (apt-get install fio)" >&2; exit 1; }
mkdir -p "$dir"
fio_file=$dir/fio-$$.dat
results=$(mktemp)
trap 'rm -f "$fio_file" "$results"' EXIT

fio_run() {  # name rw bs_kib qd [fio flags]: prints "<name> <rw> bs_kib=.. qd=.. gibps=.. cpu=.."
  local name=$1 rw=$2 bs=$3 qd=$4
  shift 4
  fio --name=anchor --filename="$fio_file" --size="${size_mib}M" --rw="$rw" --bs="${bs}k" \
      --iodepth="$qd" --ioengine=io_uring --direct=1 "$@" --output-format=json |
    python3 -c "import json, sys; j = json.load(sys.stdin)['jobs'][0];
print('$name $rw bs_kib=$bs qd=$qd gibps=%.4f cpu=%.4f' % (j['$rw']['bw_bytes'] / 2**30,
      (j['usr_cpu'] + j['sys_cpu']) / 100))"
}
fio_plain() { fio_run fio write "$1" "$2" && fio_run fio read "$1" "$2"; }
fio_fixed() {
  fio_run fio-fixed write "$1" "$2" --fixedbufs --registerfiles &&
    fio_run fio-fixed read "$1" "$2" --fixedbufs --registerfiles
}
engine_run() {  # bs_kib qd
  "$engine" --dir "$dir" --size-mib "$size_mib" --block-kib "$1" --qd "$2"
}

fallocate -l "${size_mib}M" "$fio_file"
fio_run warm write 1024 8 >/dev/null  # lay the extents down once, as the engine's first pass does
tools=(engine_run fio_plain fio_fixed)
for bs in 128 1024 8192; do
  for qd in 1 8 32; do
    for ((r = 0; r < repeats; r++)); do
      for ((t = 0; t < 3; t++)); do
        ${tools[(r + t) % 3]} $bs $qd >>"$results"
      done
    done
  done
done

python3 - "$results" "$repeats" <<'EOF'
import re, statistics, sys
runs = {}
crc = []
for line in open(sys.argv[1]):
    fields = dict(re.findall(r'(\w+)=([\d.]+)', line))
    tool, what = line.split()[:2]
    if tool == 'crc32c':
        crc.append(float(fields['gibps']))
        continue
    key = (tool, what, int(fields['bs_kib']), int(fields['qd']))
    cpu = fields.get('io_thread_cpu', fields.get('cpu', 0))
    runs.setdefault(key, []).append((float(fields['gibps']), float(cpu)))
def median(key, i=0):
    return statistics.median(v[i] for v in runs[key])
def spread(key):
    v = sorted(x[0] for x in runs[key])
    return '%.2f-%.2f' % (v[0], v[-1])
crc_gibps = statistics.median(crc)
print('ssd_vs_fio: %s repeats, medians; GiB/s; ratio = engine / fio' % sys.argv[2])
for rw in ('write', 'read'):
    for bs in (128, 1024, 8192):
        for qd in (1, 8, 32):
            e, f, x = ('engine', rw, bs, qd), ('fio', rw, bs, qd), ('fio-fixed', rw, bs, qd)
            print('%-5s bs=%5dK qd=%2d: engine %.2f (%s), fio %.2f (%s), ratio %.2f; '
                  'fio --fixedbufs %.2f (%s), ratio %.2f' % (
                rw, bs, qd, median(e), spread(e), median(f), spread(f), median(e) / median(f),
                median(x), spread(x), median(e) / median(x)))
for rw in ('write', 'read'):
    best = max((k for k in runs if k[0] == 'engine' and k[1] == rw), key=median)
    fio_best = max((k for k in runs if k[0].startswith('fio') and k[1] == rw), key=median)
    g = median(best)
    print('best engine %-5s bs=%dK qd=%d: %.2f GiB/s, I/O thread %.1f%% of a core, of which CRC32C '
          'about %.1f%% (%.1f GiB/s of CPU time alone); best %s bs=%dK qd=%d: %.2f GiB/s at '
          '%.1f%% of a core (usr+sys); ratio of bests %.2f' % (
        rw, best[2], best[3], g, 100 * median(best, 1), 100 * g / crc_gibps, crc_gibps,
        fio_best[0], fio_best[2], fio_best[3], median(fio_best), 100 * median(fio_best, 1),
        g / median(fio_best)))
# The point nearest the best in both directions: the largest min(write / best write, read / best).
best_of = {rw: max(median(k) for k in runs if k[0] == 'engine' and k[1] == rw)
           for rw in ('write', 'read')}
def score(bs, qd):
    return min(median(('engine', rw, bs, qd)) / best_of[rw] for rw in ('write', 'read'))
points = [(bs, qd) for bs in (128, 1024, 8192) for qd in (1, 8, 32)]
bs, qd = max(points, key=lambda p: score(*p))
print('nearest the best in both directions: bs=%dK qd=%d (write %.2f, read %.2f of the best; '
      'min %.2f)' % (bs, qd, median(('engine', 'write', bs, qd)) / best_of['write'],
                     median(('engine', 'read', bs, qd)) / best_of['read'], score(bs, qd)))
fresh = [median(k) for k in runs if k[1] == 'write-fresh' and k[2] == 1024]
print('engine first write into the preallocated file (bs=1M, median over qd): %.2f GiB/s'
      % statistics.median(fresh))
EOF
