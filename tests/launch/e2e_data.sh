# What the shell end-to-end tests of tests/launch share (sourced): the tiny dataset and the tiny
# model's config with a constant learning rate, so a job stopped early and resumed with another
# training.steps follows the same schedule.

# tiny_data SEQMESH WORK: 40 documents of 20..900 bytes in WORK/text, tokenized to WORK/data.
tiny_data() {
  local seqmesh=$1 work=$2
  mkdir -p "$work/text"
  awk -v dir="$work/text" 'BEGIN {
    for (i = 1; i <= 40; i++) {
      len = (i * 397) % 881 + 20; s = "";
      while (length(s) < len) s = s "doc " i ": the quick brown fox jumps over the lazy dog\n";
      printf "%s", substr(s, 1, len) > sprintf("%s/doc%02d.txt", dir, i);
    } }'
  "$seqmesh" prep --output "$work/data" "$work/text" > /dev/null
}

# tiny_config FILE DATA CHECKPOINT_INTERVAL [STEPS]: the config (capacity 256, so long documents
# run on rings of up to 4 ranks).
tiny_config() {
  cat > "$1" <<TOML
[model]
vocab = 259
hidden = 32
layers = 2
heads = 4
kv_heads = 2
ffn = 64
[training]
steps = ${4:-100}
global_batch_tokens = 2048
micro_batch_tokens = 256
log_interval = 1
threads = 1
[optimizer]
lr = 2e-3
min_lr = 2e-3
warmup_steps = 0
[data]
path = "$2"
[checkpoint]
interval = $3
[distributed]
heartbeat_timeout_s = 5
comm_deadline_s = 20
TOML
}
