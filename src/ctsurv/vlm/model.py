"""The CT vision-language model: visual tokens -> W -> any local Hugging Face causal LM.

:func:`build` assembles a new model from a decoder folder (``local_files_only``; the demo's
small LLaMA or RadLLaMA-7B); :class:`CTVisionLanguageModel` runs it: features (B, T, C) go
through the projector, replace the ``<image>`` placeholder (:func:`.merge.merge_image_tokens`)
and the decoder does the rest.  LoRA comes from peft; without ``lora`` the whole decoder is
trained (full fine-tuning).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from ..errors import DataError
from .config import VLMConfig, decoder_hash
from .merge import merge_image_tokens
from .projector import FeatureStandardizer, build_projector
from .prompt import IGNORE_INDEX, IMAGE_TOKEN, choose_prompt_format, ensure_image_token, ensure_pad_token

log = logging.getLogger(__name__)

LORA_KEYS = ("r", "alpha", "dropout", "target_modules")


@dataclass
class VLMOutput:
    """What :meth:`CTVisionLanguageModel.forward` returns.

    ``last_hidden_state`` (B, L', H) and ``attention_mask`` (B, L') are over the merged
    sequence (L' = L + T - 1): stage 2 mean-pools the hidden state over mask-1 positions.
    ``loss`` is the mean next-token cross-entropy over the labelled (answer) tokens, or None
    without labels; ``n_label_tokens`` is how many tokens it averages.
    """

    loss: torch.Tensor | None
    logits: torch.Tensor
    last_hidden_state: torch.Tensor
    attention_mask: torch.Tensor
    labels: torch.Tensor | None = None
    n_label_tokens: int = 0


class CTVisionLanguageModel(nn.Module):
    """Projector + decoder + tokenizer, with the settings that made them.

    Attributes:
        decoder: the Hugging Face causal LM (a peft ``PeftModel`` when trained with LoRA).
        projector: W, (..., C) -> (..., H).
        feature_norm: fixed standardisation of the visual tokens before W (:class:`.projector.FeatureStandardizer`).
        tokenizer: the decoder's tokenizer with ``<image>`` and a pad token.
        config: :class:`VLMConfig`.
        image_token_id: id of the placeholder.
        folder: the folder it was loaded from, or None.
    """

    def __init__(self, decoder: nn.Module, projector: nn.Module, tokenizer, config: VLMConfig):
        super().__init__()
        self.decoder = decoder
        self.projector = projector
        # Visual-token standardisation before W (identity unless config.feature_norm is
        # "standardize" and it was fitted or loaded); fixed buffers, never trained.
        self.feature_norm = FeatureStandardizer(config.feature_dim)
        self.tokenizer = tokenizer
        self.config = config
        self.image_token_id = int(tokenizer.convert_tokens_to_ids(config.image_token))
        self.folder: str | None = None  # where it was loaded from (named in error messages)

    @property
    def device(self) -> torch.device:
        return self.projector_weight.device

    @property
    def projector_weight(self) -> torch.Tensor:
        return next(self.projector.parameters())

    @property
    def uses_lora(self) -> bool:
        return self.config.lora is not None

    def freeze(self, projector: bool, decoder: bool) -> None:
        """Freeze (True) or unfreeze (False) the projector and the decoder's trainable part.

        With LoRA the decoder's trainable part is its adapter; the base weights stay frozen.
        """
        self.projector.requires_grad_(not projector)
        if self.uses_lora:
            for name, param in self.decoder.named_parameters():
                if "lora_" in name:
                    param.requires_grad_(not decoder)
        else:
            self.decoder.requires_grad_(not decoder)

    def fit_feature_norm(self, chunks) -> dict | None:
        """Fit the visual-token standardiser on training tokens (``(..., C)`` arrays, streamed).

        Deterministic (it depends on the data only), so a resumed run fits the same statistics.
        Returns the fit's summary, or None (nothing fitted) when ``config.feature_norm`` is "none".
        """
        if self.config.feature_norm != "standardize":
            return None
        fitted = self.feature_norm.fit(chunks)
        log.info("visual-token standardiser fitted on %d tokens (|mean| %.3g, median std %.3g)", fitted["tokens"],
                 fitted["mean_norm"], fitted["std_median"])
        return fitted

    def embed_inputs(self, features: torch.Tensor, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                     labels: torch.Tensor | None = None):
        """Project ``features`` and merge them into the embedded prompt (see :mod:`.merge`)."""
        if features.ndim != 3 or features.shape[-1] != self.config.feature_dim:
            raise ValueError(f"features must be (B, T, {self.config.feature_dim}), got {tuple(features.shape)}")
        weight = self.projector_weight
        # Standardised in fp32 (the buffers' precision), then W in its own dtype.
        normed = self.feature_norm(features.to(device=weight.device, dtype=torch.float32))
        image_embeds = self.projector(normed.to(weight.dtype))
        embed = self.decoder.get_input_embeddings()
        text_embeds = embed(input_ids.to(embed.weight.device))
        return merge_image_tokens(text_embeds, input_ids.to(embed.weight.device), attention_mask.to(embed.weight.device),
                                  None if labels is None else labels.to(embed.weight.device),
                                  image_embeds.to(text_embeds.dtype), self.image_token_id)

    def forward(self, features: torch.Tensor, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                labels: torch.Tensor | None = None) -> VLMOutput:
        """Decoder pass over [prompt with image tokens] (+ answer).

        Args:
            features: (B, T, C) visual tokens from the feature store.
            input_ids: (B, L) prompt (+ answer) ids with one placeholder each, padded.
            attention_mask: (B, L).
            labels: (B, L), -100 outside answers (:mod:`.prompt`), or None.
        """
        embeds, mask, positions, merged_labels = self.embed_inputs(features, input_ids, attention_mask, labels)
        with last_hidden_state(self.decoder) as captured:
            out = self.decoder(inputs_embeds=embeds, attention_mask=mask, position_ids=positions, use_cache=False,
                               return_dict=True)
        loss, n_tokens = None, 0
        if merged_labels is not None:
            loss, n_tokens = causal_lm_loss(out.logits, merged_labels)
        return VLMOutput(loss=loss, logits=out.logits, last_hidden_state=captured["hidden"], attention_mask=mask,
                         labels=merged_labels, n_label_tokens=n_tokens)

    def gradient_checkpointing_enable(self) -> None:
        """Recompute the decoder's activations in the backward pass (non-reentrant; the trainer calls it)."""
        enable_gradient_checkpointing(self.decoder)


class last_hidden_state:
    """Context manager: the decoder's last hidden state (B, L, H) of the forward pass run inside it.

    It is the input of the output embeddings (the LM head) of every Hugging Face causal LM, so a
    forward hook there keeps that one tensor; ``output_hidden_states=True`` would keep every
    layer's (33 x B x L x 4096 for a 7B decoder, alive until the batch is done).
    """

    def __init__(self, decoder: nn.Module):
        head = decoder.get_output_embeddings()
        if head is None:
            raise DataError(f"the decoder {type(decoder).__name__} has no output embeddings (LM head): it is not a causal LM")
        self.head, self.captured, self.handle = head, {}, None

    def __enter__(self) -> dict:
        def hook(module, args, kwargs, output):
            self.captured["hidden"] = args[0] if args else kwargs["input"]

        self.handle = self.head.register_forward_hook(hook, with_kwargs=True)
        return self.captured

    def __exit__(self, *exc) -> None:
        self.handle.remove()
        if exc[0] is None and "hidden" not in self.captured:
            raise RuntimeError("the decoder's forward pass did not call its output embeddings")


def causal_lm_loss(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, int]:
    """Mean cross-entropy of next-token predictions on labelled positions (fp32), and their count."""
    shift_logits = logits[:, :-1].float()
    shift_labels = labels[:, 1:]
    n_tokens = int((shift_labels != IGNORE_INDEX).sum())
    loss = nn.functional.cross_entropy(shift_logits.reshape(-1, shift_logits.shape[-1]), shift_labels.reshape(-1),
                                       ignore_index=IGNORE_INDEX, reduction="sum")
    return loss / max(n_tokens, 1), n_tokens


def decoder_context(config) -> int:
    """The decoder's context length from its Hugging Face config."""
    text = config.get_text_config() if hasattr(config, "get_text_config") else config
    for name in ("max_position_embeddings", "n_positions", "max_sequence_length", "seq_length"):
        value = getattr(text, name, None)
        if isinstance(value, int) and value > 0:
            return value
    return 2048


def load_decoder(path: str | Path, dtype: torch.dtype = torch.float32):
    """Tokenizer and causal LM from a local folder, with clear errors for folders that are not one."""
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    path = Path(path)
    if not path.is_dir():
        raise DataError(f"decoder folder {path} not found; set the decoder path in the config to a local "
                        "Hugging Face model folder (no downloads at run time)")
    if not (path / "config.json").is_file():
        raise DataError(f"decoder folder {path} has no config.json; it must be a Hugging Face causal LM "
                        "saved with save_pretrained")
    try:
        hf_config = AutoConfig.from_pretrained(path, local_files_only=True)
    except (ValueError, OSError, KeyError) as err:
        raise DataError(f"decoder folder {path}: config.json is not a Hugging Face model config ({_first_line(err)})") from None
    if not is_causal_lm(hf_config):
        raise DataError(f"decoder folder {path} holds a '{hf_config.model_type}' model, which is not a causal language "
                        "model (an encoder such as BERT cannot write answers); use a decoder-only LM such as LLaMA")
    try:
        tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
    except (ValueError, OSError, TypeError) as err:
        raise DataError(f"decoder folder {path}: no usable tokenizer ({_first_line(err)}); save the tokenizer "
                        "with the model (tokenizer.save_pretrained)") from None
    try:
        decoder = AutoModelForCausalLM.from_pretrained(path, local_files_only=True, dtype=dtype)
    except (OSError, ValueError) as err:
        raise DataError(f"decoder folder {path}: the weights could not be loaded ({_first_line(err)})") from None
    return tokenizer, decoder


#: Encoder-only families: transformers maps some of them to a "causal LM" class (BertLMHeadModel)
#: that is a masked-LM encoder run with a causal mask, not a language model that writes text.
ENCODER_ONLY = ("bert", "roberta", "xlm-roberta", "distilbert", "albert", "electra", "deberta", "deberta-v2",
                "camembert", "longformer", "mpnet", "ernie", "modernbert", "mobilebert", "funnel", "squeezebert")


def is_causal_lm(hf_config) -> bool:
    """Whether a model config is a decoder-only language model (by family and by the classes it
    was saved as: ``architectures`` such as LlamaForCausalLM, GPT2LMHeadModel)."""
    from transformers import MODEL_FOR_CAUSAL_LM_MAPPING

    if type(hf_config) not in MODEL_FOR_CAUSAL_LM_MAPPING or hf_config.model_type in ENCODER_ONLY:
        return False
    saved_as = list(getattr(hf_config, "architectures", None) or [])
    return not saved_as or any(name.endswith(("ForCausalLM", "LMHeadModel")) for name in saved_as)


def _first_line(err: Exception) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


def prepare_tokenizer_and_embeddings(tokenizer, decoder, image_token: str = IMAGE_TOKEN) -> None:
    """Pad token and ``<image>`` token; grow the embeddings (deterministically) when ``<image>`` is new.

    The new rows are zero: the input row is never read (the merge replaces the placeholder)
    and a zero output row gives the same logits whenever the same decoder is prepared again,
    which is what lets a LoRA model be saved without the (unchanged) base embeddings.
    """
    if tokenizer.eos_token_id is None:
        raise DataError("the decoder's tokenizer has no EOS token: answers end with EOS (training) and generation stops "
                        "at it; set tokenizer.eos_token and save the tokenizer again")
    ensure_pad_token(tokenizer)
    ensure_image_token(tokenizer, image_token)
    old = decoder.get_input_embeddings().weight.shape[0]
    if len(tokenizer) > old:
        decoder.resize_token_embeddings(len(tokenizer), mean_resizing=False)
        with torch.no_grad():
            decoder.get_input_embeddings().weight[old:].zero_()
            output = decoder.get_output_embeddings()
            if output is not None:
                output.weight[old:].zero_()
                if getattr(output, "bias", None) is not None:
                    output.bias[old:].zero_()
    if getattr(decoder.config, "pad_token_id", None) is None:
        decoder.config.pad_token_id = tokenizer.pad_token_id
    if getattr(decoder, "generation_config", None) is not None and decoder.generation_config.pad_token_id is None:
        decoder.generation_config.pad_token_id = tokenizer.pad_token_id


def apply_lora(decoder, lora: dict):
    """Wrap ``decoder`` in a peft LoRA model; ``lora`` = {r, alpha, dropout, target_modules}."""
    from peft import LoraConfig, get_peft_model

    missing = [k for k in LORA_KEYS if k not in lora]
    if missing:
        raise ValueError(f"lora settings need {LORA_KEYS}, missing {missing}")
    config = LoraConfig(r=int(lora["r"]), lora_alpha=float(lora["alpha"]), lora_dropout=float(lora["dropout"]),
                        target_modules=list(lora["target_modules"]), task_type="CAUSAL_LM")
    try:
        return get_peft_model(decoder, config)
    except ValueError as err:
        raise DataError(f"LoRA target_modules {list(lora['target_modules'])} do not match the decoder's layers "
                        f"({_first_line(err)})") from None


def build(
    decoder_path: str | Path,
    feature_dim: int,
    tokens: int,
    projector: str = "linear",
    feature_norm: str = "none",
    lora: dict | None = None,
    feature_fingerprint: str | None = None,
    dtype: torch.dtype = torch.float32,
    gradient_checkpointing: bool = False,
    prompt_format: str | None = None,
    encoder: dict | None = None,
) -> CTVisionLanguageModel:
    """A new model: the decoder from ``decoder_path``, a freshly initialised projector.

    Args:
        decoder_path: a local Hugging Face causal LM folder (loaded with ``local_files_only``).
        feature_dim: C of the visual tokens.
        tokens: T, visual tokens per study.
        projector: "linear" or "mlp2x_gelu".
        feature_norm: "standardize" or "none" (:class:`VLMConfig`); the standardiser starts as
            the identity: fit it on the training tokens (``model.feature_norm.fit``) before training.
        lora: {r, alpha, dropout, target_modules} for peft, or None for full fine-tuning.
        feature_fingerprint: the feature store's ``encoder.json`` fingerprint (checked on load).
        dtype: weights' dtype (fp32 on CPU; bf16 for a 7B decoder on a GPU).
        gradient_checkpointing: recompute activations in the backward pass (non-reentrant).
        prompt_format: "chat_template" or "plain"; default: the template when the tokenizer has one.
        encoder: the image encoder + preprocessing of the features (:func:`.locate.encoder_record`;
            recorded for ``ctsurv ask --image`` and ``ctsurv predict``).

    Raises:
        DataError: the folder is missing, not a causal LM, or has no tokenizer.
    """
    from .locate import decoder_location

    tokenizer, decoder = load_decoder(decoder_path, dtype)
    prepare_tokenizer_and_embeddings(tokenizer, decoder)
    config = VLMConfig(
        decoder=str(decoder_path), decoder_hash=decoder_hash(decoder_path), decoder_location=decoder_location(decoder_path),
        feature_dim=int(feature_dim),
        tokens=int(tokens), hidden_size=int(decoder.get_input_embeddings().embedding_dim), projector=projector,
        feature_norm=feature_norm,
        feature_fingerprint=feature_fingerprint, prompt_format=prompt_format or choose_prompt_format(tokenizer),
        max_length=decoder_context(decoder.config), lora=dict(lora) if lora else None, encoder=encoder,
    )
    if config.prompt_format == "chat_template" and not getattr(tokenizer, "chat_template", None):
        raise DataError(f"decoder folder {decoder_path}: prompt_format 'chat_template' but the tokenizer has no chat template")
    if lora:
        decoder = apply_lora(decoder, lora)
    if gradient_checkpointing:
        enable_gradient_checkpointing(decoder)
    proj = build_projector(projector, config.feature_dim, config.hidden_size).to(dtype)
    model = CTVisionLanguageModel(decoder, proj, tokenizer, config)
    log.info("built vision-language model: decoder %s (%s), projector %s %d -> %d, %d visual tokens, %s",
             decoder_path, config.decoder_hash, projector, config.feature_dim, config.hidden_size, tokens,
             f"LoRA r={lora['r']}" if lora else "full fine-tuning")
    return model


def enable_gradient_checkpointing(decoder) -> None:
    """Non-reentrant checkpointing (works with inputs_embeds and frozen embeddings)."""
    # transformers 5 renamed the API (and its keyword); 4.x only has the old name.
    if hasattr(decoder, "activation_checkpointing_enable"):
        decoder.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
    else:
        decoder.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    decoder.config.use_cache = False
