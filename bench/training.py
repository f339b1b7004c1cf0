"""Our training step (train.py's Trainer) against the reference notebook's, interleaved step by step on a Trainer
callback's clock (bench/README.md says why not `Timer`); profiles."""

import shlex
import tempfile
import time

import torch
import yaml
from torch.utils.data import DataLoader, TensorDataset
from transformers import DataCollatorWithPadding, PrinterCallback, TrainerCallback, TrainingArguments
from transformers.trainer_pt_utils import get_length_grouped_indices

from bench.flops import flops_per_length, gemm_flops_per_second
from bench.models import import_training_module
from bench.report import rates, summary
from modeling_lyric_valence import chunk_lyrics

BATCH_SIZE = 32
MAX_LENGTH = 512
STRIDE = 128
# LengthGroupedSampler sorts random megabatches of 50 batches on any dataset of 6,400+ chunks.
MEGABATCH_BATCHES = 50
# train.py's defaults (tests/test_bench_training.py checks them against LyricValenceTrainingArguments)
OUR_TRAINING_ARGUMENTS = {
    "per_device_train_batch_size": BATCH_SIZE,
    "learning_rate": 2e-3,
    "warmup_steps": 0.06,
    "train_sampling_strategy": "group_by_length",
    "max_grad_norm": 1.0,
    "seed": 42,
}
OUR_HEAD_LEARNING_RATE = 1e-3
REFERENCE_LEARNING_RATE = 2e-5
MODEL_INPUTS = ("input_ids", "token_type_ids", "attention_mask")
# Profiler event names of GEMM-like work: aten ops on CPU, kernel names on CUDA.
MATRIX_PRODUCT_KEYS = "addmm aten::mm bmm gemm xmma nvjet cutlass scaled_dot_product attention fmha sdpa".split()


def chunk_features(tokenizer, texts: list[str], labels: list[float]) -> list[dict]:
    """One feature dict per chunk (max 512, stride 128), with the columns `chunk_split` gives train.py's Trainer."""
    encoded = chunk_lyrics(tokenizer, texts, MAX_LENGTH, STRIDE)
    song_of_chunk = encoded.pop("overflow_to_sample_mapping")
    features = [dict(zip(encoded.keys(), values, strict=True)) for values in zip(*encoded.values(), strict=True)]
    for chunk_id, (feature, song) in enumerate(zip(features, song_of_chunk, strict=True)):
        feature.update(labels=labels[song], song_index=song, chunk_id=chunk_id)
    return features


def epoch_sample(features: list[dict], batches: int, seed: int = 42) -> list[dict]:
    """`batches` batches of 32 chunks of the first megabatch (50 batches sorted by length) of train.py's epoch order
    (`get_length_grouped_indices`, what `LengthGroupedSampler` runs), evenly spaced from the longest to the shortest,
    flattened in batch order."""
    megabatch = MEGABATCH_BATCHES * BATCH_SIZE
    if len(features) < megabatch or not 1 <= batches <= MEGABATCH_BATCHES:
        raise ValueError(f"need {megabatch}+ chunks (got {len(features)}) and 1..{MEGABATCH_BATCHES} batches")
    lengths = [len(feature["input_ids"]) for feature in features]
    generator = torch.Generator().manual_seed(seed)
    order = get_length_grouped_indices(lengths, BATCH_SIZE, mega_batch_mult=MEGABATCH_BATCHES, generator=generator)
    picks = [int((index + 0.5) * MEGABATCH_BATCHES / batches) for index in range(batches)]
    return [features[i] for pick in picks for i in order[pick * BATCH_SIZE : (pick + 1) * BATCH_SIZE]]


def batch_shapes(features: list[dict]) -> list[tuple[int, int]]:
    """(chunks, padded length) of each batch of 32 that train.py's collator makes of `features`, read in order."""
    batches = [features[i : i + BATCH_SIZE] for i in range(0, len(features), BATCH_SIZE)]
    return [(len(batch), max(len(feature["input_ids"]) for feature in batch)) for batch in batches]


def synchronize(device: torch.device) -> None:
    """Wait for the device's queued work (no-op on CPU)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def set_tf32(enabled: bool) -> None:
    """TF32 cuBLAS matrix products on or off. The legacy flag's setter sets the new per-backend precision too, so
    both agree (torch 2.9+ raises when they differ, as after transformers' `--tf32` has set only the new global one)."""
    torch.backends.cuda.matmul.allow_tf32 = enabled


def reference_loader(features: list[dict], tokenizer, seed: int = 42) -> DataLoader:
    """The reference notebook's data: every chunk padded to 512 tokens, shuffled batches of 32."""
    inputs = [{name: feature[name] for name in MODEL_INPUTS} for feature in features]
    padded = tokenizer.pad(inputs, padding="max_length", max_length=MAX_LENGTH, return_tensors="pt")
    labels = torch.tensor([feature["labels"] for feature in features], dtype=torch.float32)
    dataset = TensorDataset(*(padded[name] for name in MODEL_INPUTS), labels)
    return DataLoader(dataset, batch_size=BATCH_SIZE, shuffle=True, generator=torch.Generator().manual_seed(seed))


class InterleavedTimer(TrainerCallback):
    """Times each epoch of our training steps (data loading included) and, after each of our steps, runs one step of the
    reference notebook's with our clock paused, so the two alternate step by step and see the same load on a shared
    machine. The reference step: every chunk padded to 512 tokens, shuffled batches of 32 of the same chunks (so an
    epoch of each has the same number of steps), a plain fp32 PyTorch loop (zero_grad, forward with the MSE loss,
    backward, AdamW at 2e-5 on the trainable weights; no schedule, no clipping) on its own copy of the model."""

    def __init__(self, model, features: list[dict], tokenizer, device: torch.device, seed: int = 42):
        self.model, self.device = model.to(device), device
        trainable = [weight for weight in model.parameters() if weight.requires_grad]
        self.optimizer = torch.optim.AdamW(trainable, lr=REFERENCE_LEARNING_RATE)
        self.loader, self.batches = reference_loader(features, tokenizer, seed), iter(())
        self.ours_s = self.reference_s = self.started = 0.0

    def on_epoch_begin(self, args, state, control, **kwargs):
        self.ours_s = self.reference_s = 0.0
        self.batches = iter(self.loader)
        set_tf32(bool(args.tf32))  # as this variant asks (the one before may have asked otherwise)
        self.resume()

    def on_step_end(self, args, state, control, **kwargs):
        self.pause()
        start = time.perf_counter()
        set_tf32(False)  # the notebook's plain fp32 (a tf32 variant of ours may have turned tf32 on)
        batch = dict(zip((*MODEL_INPUTS, "labels"), next(self.batches), strict=True))
        self.model.train()
        self.optimizer.zero_grad()
        self.model(**{name: tensor.to(self.device) for name, tensor in batch.items()}).loss.backward()
        self.optimizer.step()
        synchronize(self.device)
        self.reference_s += time.perf_counter() - start
        set_tf32(bool(args.tf32))  # as our variant asked
        self.resume()

    def on_epoch_end(self, args, state, control, **kwargs):
        self.pause()

    def resume(self) -> None:
        synchronize(self.device)
        self.started = time.perf_counter()

    def pause(self) -> None:
        synchronize(self.device)
        self.ours_s += time.perf_counter() - self.started


def our_trainer(
    model, features: list[dict], tokenizer, device: torch.device, output_dir: str, callbacks=(), flags: str = ""
):
    """What train.py builds for `model` with the extra train.py `flags` (e.g. "--bf16 True"): one epoch per `train()`
    over `features` read in order (`epoch_sample` gives train.py's batch order); no evaluation, logging or
    checkpoints."""
    training = import_training_module()
    args = TrainingArguments(  # no evaluation and no reports: the defaults
        output_dir=output_dir,
        num_train_epochs=1,
        label_names=list(training.LABEL_NAMES),
        save_strategy="no",
        logging_strategy="no",
        disable_tqdm=True,
        use_cpu=device.type == "cpu",
        **{**OUR_TRAINING_ARGUMENTS, "train_sampling_strategy": "sequential"},
        **flag_values(flags),
    )
    trainer = training.ChunkedSongTrainer(
        model=model,
        args=args,
        train_dataset=features,
        processing_class=tokenizer,
        data_collator=DataCollatorWithPadding(tokenizer),
        head_learning_rate=OUR_HEAD_LEARNING_RATE,
        callbacks=list(callbacks),
    )
    trainer.remove_callback(PrinterCallback)  # its end-of-training metrics print, not the training
    return trainer


def flag_values(flags: str) -> dict:
    """TrainingArguments values of train.py flags such as "--bf16 True --optim adamw_torch_fused"."""
    words = shlex.split(flags)
    return {name.removeprefix("--"): yaml.safe_load(value) for name, value in zip(words[::2], words[1::2], strict=True)}


def profile_top_operations(run, device: torch.device, top: int = 8) -> dict:
    """torch.profiler's `top` operators of `run()` by self CPU time on CPU, or GPU kernels by kernel time on CUDA (an
    aten operator's self device time repeats its kernels'), each with its share, and the matrix products' share."""
    with torch.profiler.profile() as profiler:  # CPU, and CUDA where there is one
        run()
    cuda = device.type == "cuda"
    counting = "GPU kernel time (kernels only)" if cuda else "self CPU time of operators"
    events = [
        (event.key, event.self_device_time_total if cuda else event.self_cpu_time_total)
        for event in profiler.key_averages()
        if not cuda or event.device_type == torch.autograd.DeviceType.CUDA
    ]
    total = sum(time_us for _, time_us in events) or 1
    events.sort(key=lambda event: event[1], reverse=True)
    matrix = sum(time_us for name, time_us in events if is_matrix_product(name))
    return {
        "counting": counting,
        "total_s": total / 1e6,
        "matrix_product_share": matrix / total,
        "top": [{"op": name, "s": time_us / 1e6, "share": time_us / total} for name, time_us in events[:top]],
    }


def is_matrix_product(name: str) -> bool:
    """Whether a profiler event is a GEMM-like kernel: linear layers, batched products, fused attention."""
    return any(key in name.lower() for key in MATRIX_PRODUCT_KEYS)


def throughput(seconds: list[float], peaks: list[float], executed_flops: int, **amounts: int) -> dict:
    """Per-round rates of `amounts` (chunks, tokens, padded_tokens, model_flops), MFU (model FLOPs on real tokens)
    and HFU (executed FLOPs, of the padded shapes), against each round's GEMM peak."""
    return {
        **rates(seconds, **amounts),
        "mfu": summary([amounts["model_flops"] / s / peak for s, peak in zip(seconds, peaks, strict=True)]),
        "hfu": summary([executed_flops / s / peak for s, peak in zip(seconds, peaks, strict=True)]),
        "model_flops": amounts["model_flops"],
        "executed_flops": executed_flops,
    }


def measure_training(model_factory, tokenizer, features: list[dict], device, variants: dict, settings: dict, log=print):
    """Our training step in each variant (name: extra train.py flags) against the reference step. After a warm-up step
    of each (timed: it holds `torch.compile`'s compilation), `settings["rounds"]` rounds of: the GEMM peak (`gemm_size`,
    `gemm_seconds`), then per variant one pass of our step over `features` interleaved with the reference step's. Each
    trains its own copy of the same LoRA model (the reference's with the encoder's own dropouts)."""
    lengths = [len(feature["input_ids"]) for feature in features]
    shapes = batch_shapes(features)
    output_dir = tempfile.mkdtemp(prefix="bench-train-")
    timer = InterleavedTimer(model_factory(reference=True), features, tokenizer, device)
    trainers, warmup_s, failed = {}, {}, {}
    for name, flags in variants.items():
        log(f"training: warm-up step of {name}")
        start = time.perf_counter()
        try:
            trainer = our_trainer(model_factory(), features, tokenizer, device, output_dir, [timer], flags)
            trainer.args.max_steps = 1
            trainer.train()
        except Exception as error:  # a setting this machine cannot run (e.g. torch.compile without a compiler)
            failed[name] = f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}"[:300]
            log(f"training: {name} failed: {failed[name]}")
            continue
        warmup_s[name] = time.perf_counter() - start - timer.reference_s
        trainer.args.max_steps = -1
        trainers[name] = trainer
    if not trainers:
        raise RuntimeError(f"no variant of our training step could run here: {failed}")
    peaks, epochs = [], {name: [] for name in trainers}
    for round_index in range(settings["rounds"]):
        set_tf32(False)  # the fp32 peak (the variant before may have turned TF32 on)
        peaks.append(gemm_flops_per_second(settings["gemm_size"], settings["gemm_seconds"], device))
        for name, trainer in trainers.items():
            trainer.train()  # one epoch of our steps interleaved with the reference's
            epochs[name].append({"ours_s": timer.ours_s, "reference_s": timer.reference_s})
        times = ", ".join(
            f"{name} {e[-1]['ours_s']:.2f} s (reference {e[-1]['reference_s']:.2f} s)" for name, e in epochs.items()
        )
        log(f"training round {round_index + 1}/{settings['rounds']}: GEMM {peaks[-1] / 1e9:.1f} GFLOP/s; {times}")
    training_flops = flops_per_length(next(iter(trainers.values())).model, training=True)
    amounts = {"chunks": len(lengths), "tokens": sum(lengths), "model_flops": sum(map(training_flops, lengths))}
    reference_seconds = [epoch["reference_s"] for name in trainers for epoch in epochs[name]]
    padded, executed = len(lengths) * MAX_LENGTH, len(lengths) * training_flops(MAX_LENGTH)
    reference = throughput(reference_seconds, peaks * len(trainers), executed, padded_tokens=padded, **amounts)
    results = {
        "chunks": len(lengths),
        "steps_per_epoch": len(shapes),
        "real_tokens": sum(lengths),
        "mean_chunk_tokens": sum(lengths) / len(lengths),
        "gemm_peak_flops_per_s": summary(peaks),
        "reference": reference,
        "reference_dropouts": "encoder's own",
        "variants": {},
        "failed": failed,
    }
    executed_flops = sum(count * training_flops(length) for count, length in shapes)
    padded = sum(count * length for count, length in shapes)
    for name in trainers:
        seconds = [epoch["ours_s"] for epoch in epochs[name]]
        results["variants"][name] = {
            **throughput(seconds, peaks, executed_flops, padded_tokens=padded, **amounts),
            "flags": variants[name],
            "warmup_s": warmup_s[name],
            "ratio": summary([epoch["reference_s"] / epoch["ours_s"] for epoch in epochs[name]]),
        }
    results["best"] = max(trainers, key=lambda name: results["variants"][name]["ratio"]["median"])
    return results


def middle_batch(features: list[dict]) -> list[dict]:
    """The middle batch of 32 of `features` in batch order (of `epoch_sample`: a batch of median-length chunks)."""
    batches = len(features) // BATCH_SIZE
    return features[batches // 2 * BATCH_SIZE : (batches // 2 + 1) * BATCH_SIZE]


def profile_training_step(model_factory, tokenizer, features: list[dict], device: torch.device, flags: str) -> dict:
    """Profile of one of our training steps (with train.py `flags`) on the middle batch of `features`."""
    batch = middle_batch(features)
    output_dir = tempfile.mkdtemp(prefix="bench-profile-")
    trainer = our_trainer(model_factory(), batch, tokenizer, device, output_dir, flags=flags)
    trainer.train()  # warm-up: the first step may compile
    profile = profile_top_operations(trainer.train, device)
    return {**profile, "flags": flags, "chunks": len(batch), "max_tokens": max(len(f["input_ids"]) for f in batch)}
