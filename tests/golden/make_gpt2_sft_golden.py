"""Produces tests/golden/gpt2_sft/sft4.safetensors: 4 optimizer steps of karpathy/nanochat 92d63d4's
scripts/chat_sft.py on CPU from the base checkpoint tests/golden/gpt2_sft/base_d2 (written by
tests/golden/make_gpt2_checkpoint_golden.py: run that first).

Usage: python tests/golden/make_gpt2_sft_golden.py /path/to/nanochat-92d63d4-checkout [out.safetensors]
The checkout is only imported and read; TORCHDYNAMO_DISABLE is set (the optimizer's compiled kernels
run eagerly), COMPUTE_DTYPE is fp32 on CPU. The model comes from the reference's
checkpoint_manager.build_model (phase "train": the bf16 embeddings become fp32 on CPU); the tokenizer
is tests/golden/chat/tokenizer.pkl; the datasets are chat_sft.py's train mixture (SmolTalk train +
MMLU all/auxiliary_train x 3 + GSM8K main/train x 4) over the stand-ins in manifests/data/chat_smoke,
loaded through reference_source.use_chat_standins, as make_sft_bestfit_golden.py loads them.
From chat_sft.py's own source (executed, not copied) come: the init_lr_frac override of the groups'
LRs, the data generator with its globals (`last_step = False` to the train_loader line), the LR and
momentum schedules, and the training step (its micro-step loop through `model.zero_grad`). The
settings are: --load-optimizer 0, max_seq_len 256, device_batch_size 2, total_batch_size 1024 (2
micro-batches a step), num_iterations 8 (batches, as chat_sft.py counts them: 4 steps; the 4th step's
progress is 9/8, so its LR multiplier is -0.25, as the reference computes it), init_lr_frac 0.8,
setup_optimizer(unembedding_lr=0.008, embedding_lr=0.3, matrix_lr=0.02, weight_decay=0.0) (the gpt2
presets' values), warm-up 0, warm-down 0.5, final LR 0. The outer loop is chat_sft.py's without
its evaluations (they do not change the weights): step until `last_step`.
Recorded: each step's micro-batch losses, LR multiplier and progress; the weights after step 4: every
parameter in full except wte, lm_head and the value embeddings, of which every 8th row (to keep the
golden small). The float-noise envelope: the same run from base weights each moved one ulp up (and,
in a third run, down), exact zeros kept; the largest difference from the recorded run, over the
recorded weights and over the losses, goes into the metadata.
"""
import json, math, os, shutil, sys, tempfile, types

ref = sys.argv[1]
here = os.path.dirname(os.path.abspath(__file__))
root = os.path.abspath(os.path.join(here, "..", ".."))
out = sys.argv[2] if len(sys.argv) > 2 else os.path.join(here, "gpt2_sft", "sft4.safetensors")
standins = os.path.join(root, "manifests", "data", "chat_smoke")
sys.path.insert(0, ref)
os.environ.setdefault("TORCHDYNAMO_DISABLE", "1")
import torch
from tasks.common import TaskMixture
from tasks.gsm8k import GSM8K
from tasks.mmlu import MMLU
from tasks.smoltalk import SmolTalk
from reference_source import ScriptSource, dedent, use_chat_standins
from safetensors_writer import cpu_model, write_safetensors
from nanochat.common import COMPUTE_DTYPE
from nanochat.checkpoint_manager import build_model

assert COMPUTE_DTYPE == torch.float32
SETTINGS = dict(max_seq_len=256, device_batch_size=2, total_batch_size=1024, num_iterations=8, init_lr_frac=0.8,
                warmup_ratio=0.0, warmdown_ratio=0.5, final_lr_frac=0.0, mmlu_epochs=3, gsm8k_epochs=4)
LRS = dict(unembedding_lr=0.008, embedding_lr=0.3, matrix_lr=0.02, weight_decay=0.0)
ROW_SAMPLED = ("transformer.wte.weight", "lm_head.weight", "value_embeds.")
ROW_STRIDE = 8


use_chat_standins(standins)
source = ScriptSource(ref, "chat_sft.py")
INIT_LR_FRAC = source.between("# Override the initial learning rate", "# SFT data mixture")
GENERATOR = source.between("last_step = False", "train_loader = sft_data_generator_bos_bestfit")
SCHEDULES = source.between("def get_lr_multiplier(progress):", "# Training loop")
STEP = dedent(source.between("    for micro_step in range(grad_accum_steps):", "    synchronize()\n    t1 = time.time()"))

base = tempfile.mkdtemp()
os.makedirs(os.path.join(base, "tokenizer"))
shutil.copy(os.path.join(here, "chat", "tokenizer.pkl"), os.path.join(base, "tokenizer", "tokenizer.pkl"))
os.environ["NANOCHAT_BASE_DIR"] = base
checkpoint_dir = os.path.join(here, "gpt2_sft", "base_d2")
tokenizer = None


def run(nudge=0.0):
    global tokenizer
    model, tokenizer, meta = build_model(checkpoint_dir, 0, torch.device("cpu"), phase="train")
    if nudge:
        with torch.no_grad():
            for p in model.parameters():
                p.copy_(torch.where(p == 0, p, torch.nextafter(p, torch.full_like(p, nudge))))
    args = types.SimpleNamespace(**SETTINGS)
    train_dataset = TaskMixture([
        SmolTalk(split="train"),
        *[MMLU(subset="all", split="auxiliary_train") for _ in range(args.mmlu_epochs)],
        *[GSM8K(subset="main", split="train") for _ in range(args.gsm8k_epochs)],
    ])
    optimizer = model.setup_optimizer(**LRS)
    env = dict(args=args, model=model, optimizer=optimizer, tokenizer=tokenizer, train_dataset=train_dataset,
               val_dataset=None, ddp_rank=0, ddp_world_size=1, device_type="cpu", device="cpu", torch=torch,
               scaler=None, is_ddp_initialized=lambda: False, synchronize=lambda: None, time=None)
    exec(INIT_LR_FRAC, env)
    exec(GENERATOR, env)
    exec(SCHEDULES, env)
    grad_accum_steps = args.total_batch_size // (args.device_batch_size * args.max_seq_len)
    env.update(grad_accum_steps=grad_accum_steps, progress=0)
    env["train_loader"] = env["sft_data_generator_bos_bestfit"]("train")
    env["x"], env["y"] = next(env["train_loader"])
    losses, schedule, step = [], [], 0
    while not env["last_step"]:
        # The micro-step loss as the reference computes it, each micro-step (train_loss keeps only the last).
        micro = []
        forward = model.forward
        model.forward = lambda *a, **k: (lambda l: (micro.append(l.item()), l)[1])(forward(*a, **k))
        env["step"] = step
        exec(STEP, env)
        model.forward = forward
        losses.append(micro)
        schedule.append([env["lrm"], env["progress"]])
        step += 1
    weights = {}
    for name, p in sorted(model.named_parameters()):
        t = p.detach().clone()
        weights[name] = t[::ROW_STRIDE].contiguous() if name.startswith(ROW_SAMPLED) else t
    return weights, losses, schedule


weights, losses, schedule = run()
assert len(losses) == 4 and all(len(m) == 2 for m in losses), losses
envelope = {}
for label, nudge in [("initial_weights_up_one_ulp", math.inf), ("initial_weights_down_one_ulp", -math.inf)]:
    w, l, _ = run(nudge)
    envelope[label] = {
        "weights": max((weights[k] - w[k]).abs().max().item() for k in weights),
        "loss": max(abs(a - b) for ma, mb in zip(losses, l) for a, b in zip(ma, mb)),
    }
    print(label, envelope[label])
shutil.rmtree(base)

tensors = {"losses": torch.tensor(losses, dtype=torch.float64), "schedule": torch.tensor(schedule, dtype=torch.float64)}
for name, t in weights.items():
    tensors["step4." + name] = t
meta = {"settings": json.dumps(SETTINGS), "lrs": json.dumps(LRS), "row_stride": str(ROW_STRIDE), "parameters": str(len(weights)),
        "row_sampled": json.dumps(ROW_SAMPLED), "envelope": json.dumps(envelope),
        "reference": "karpathy/nanochat 92d63d4", "torch": torch.__version__, "cpu": cpu_model()}
write_safetensors(out, tensors, meta)
print("wrote", out, os.path.getsize(out), "bytes; losses", losses, "schedule", schedule)
