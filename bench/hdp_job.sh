# Sourced by bench/hdp_e2e.sh and bench/hdp_offload.sh: the data and config of their 4-layer
# HDP jobs, and the helpers that read their metrics.
#
#   hdp_job WORK STEPS COST MAX_LENGTH   writes WORK/data (2,000 passkey documents, byted-like
#                                        lengths scaled to C = 1,024, bench/byted-like-c1024
#                                        .lengths, cut at MAX_LENGTH; SEED, default 7) and
#                                        WORK/hdp.toml (hidden 128, 4 layers, 16,384 tokens per
#                                        step, one thread per rank, the cost file COST)
#   median                               the median of the numbers on stdin
#   field FILE KEY                       KEY of every step of a metrics.jsonl but the first
#   step_ratio FILE A B                  the median over those steps of each step's A / B
hdp_job() {
  local work=$1 steps=$2 cost=$3 max_length=$4
  local root
  root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
  "$seqmesh" synth --task passkey --lengths "$root/bench/byted-like-c1024.lengths" --count 2000 \
    --max-length "$max_length" --min-length 96 --seed "${SEED:-7}" --output "$work/data" > /dev/null
  cat > "$work/hdp.toml" <<TOML
[model]
vocab = 259
hidden = 128
layers = 4
heads = 4
kv_heads = 2
ffn = 384
[training]
steps = $steps
global_batch_tokens = 16384
micro_batch_tokens = 1024
log_interval = 1000
threads = 1
[optimizer]
lr = 1e-3
warmup_steps = 0
[data]
path = "$work/data"
[checkpoint]
interval = 0
[distributed]
cost = "$cost"
TOML
}

median() { sort -g | awk '{ v[NR] = $1 } END { if (NR == 0) print "nan"; else print v[int((NR + 1) / 2)] }'; }
field() { sed -n "s/.*\"$2\":\([-0-9.eE+]*\).*/\1/p" "$1" | tail -n +2; }
step_ratio() { paste <(field "$1" "$2") <(field "$1" "$3") | awk '{ print $1 / $2 }' | median; }
