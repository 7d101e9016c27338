"""Flemme's names and the smp_like names they translate to (encoders, blocks, losses, metrics, optimizers,
transforms, datasets), plus every key Flemme reads, section by section.

The key lists are what makes the one start-up warning exact: a key in a list below is *recognised* (translated, or
listed as having no effect here, with the reason), any other key is *unknown* (listed with the closest known name).
"""

from typing import Dict, Tuple

__all__ = [
    "MODEL_NAMES",
    "SEGMENTATION_MODELS",
    "DIFFUSION_MODELS",
    "ENCODER_FAMILIES",
    "BUILDING_BLOCKS",
    "LOSSES",
    "METRICS",
    "OPTIMIZERS",
    "DATASETS",
    "DOWNLOAD_DATASETS",
    "ACTIVATIONS",
    "PARAMETERIZATIONS",
]

#: Flemme ``model.name`` -> smp_like ``model.arch`` (``None``: decided by the encoder; see translate.py).
MODEL_NAMES: Dict[str, str] = {
    "SeM": "",  # Unet / UnetPlusPlus by the encoder name
    "HSeM": "HSeM",
    "ClM": "ClM",
    "AE": "AE",
    "HAE": "HAE",
    "VAE": "VAE",
    "DDPM": "DDPM",
    "DDIM": "DDIM",
    "SDM": "SDPM",
    "SDPM": "SDPM",
    "SDIM": "SDIM",
    "LDM": "LDPM",
    "LDPM": "LDPM",
    "LDIM": "LDIM",
    "EDM": "",  # refused with a clear message
    "Base": "",  # not trainable in Flemme either (no loss)
    "HBase": "",
}
SEGMENTATION_MODELS = ("SeM", "HSeM")
DIFFUSION_MODELS = ("DDPM", "DDIM", "SDM", "SDPM", "SDIM", "LDM", "LDPM", "LDIM")

#: Flemme image encoder -> (smp_like encoder family, shape), shape one of "plain" (no skips: Flemme's encoder +
#: decoder), "u" (U-Net skips) or "d" (DNet: dense skips, UnetPlusPlus here).
ENCODER_FAMILIES: Dict[str, Tuple[str, str]] = {
    "CNN": ("cnn", "plain"),
    "UNet": ("cnn", "u"),
    "DNet": ("cnn", "d"),
    "ViT": ("vit", "plain"),
    "ViTU": ("vit", "u"),
    "ViTD": ("vit", "d"),
    "Swin": ("swin", "plain"),
    "SwinU": ("swin", "u"),
    "SwinD": ("swin", "d"),
    "VMamba": ("vmamba", "plain"),
    "VMambaU": ("vmamba", "u"),
    "VMambaD": ("vmamba", "d"),
}

#: Flemme ``building_block`` -> smp_like ``building_block`` of the encoder family.
BUILDING_BLOCKS: Dict[str, Dict[str, str]] = {
    "cnn": {"single": "conv", "conv": "conv", "double": "double_conv", "double_conv": "double_conv",
            "res": "res_conv", "res_conv": "res_conv"},
    "vit": {"vit": "vit"},
    "swin": {"swin": "swin", "double_swin": "double_swin", "res_swin": "res_swin"},
    "vmamba": {b: b for b in ("vmamba", "vmamba2", "double_vmamba", "double_vmamba2", "res_vmamba",
                              "res_vmamba2")},
}
#: The default block of each family when the config gives none (Flemme's own defaults).
DEFAULT_BLOCKS = {"cnn": "single", "vit": "vit", "swin": "swin", "vmamba": "vmamba"}

#: Flemme loss name -> smp_like loss name (``smp_like.losses`` registry).
LOSSES: Dict[str, str] = {
    "Dice": "Dice",
    "BCEL": "BCEWithLogits",
    "BCE": "BCEWithLogits",  # smp_like models output logits: BCE on sigmoid(logits) is BCE-with-logits
    "CE": "CrossEntropy",
    "MSE": "MSELoss",
    "L1": "L1Loss",
    "SSIM": "SSIMLoss",
    "KL": "KLDivergenceLoss",
}

#: Flemme evaluation metric -> smp_like ``metrics.names`` entry.
METRICS: Dict[str, str] = {
    "Dice": "dice",
    "SoftDice": "dice",
    "ACC": "accuracy",
    "mIoU": "iou",
    "IoU": "iou",
    "SSIM": "ssim",
    "PSNR": "psnr",
    "MSE": "mse",
}

OPTIMIZERS = {"SGD": "SGD", "Adam": "Adam", "AdamW": "AdamW"}

#: Flemme dataset name -> (what the loader yields): "seg" image + mask, "img" image only, "recon" image + target
#: image, "cls" image + class label.
DATASETS: Dict[str, str] = {
    "ImgSegDataset": "seg",
    "MultiModalityImgSegDataset": "seg",
    "PatchImgSegDataset": "seg",
    "MultiModalityPatchImgSegDataset": "seg",
    "ImgSegWithClassLabelDataset": "seg",
    "ImgDataset": "img",
    "ImgReconDataset": "recon",
    "ImgClsDataset": "cls",
}
#: torchvision datasets Flemme downloads at run time.
DOWNLOAD_DATASETS = ("MNIST", "CIFAR10", "CelebA")

#: Flemme activation spellings that differ from torch's.
ACTIVATIONS = {"lrelu": "leaky_relu", "leakyrelu": "leaky_relu", "swish": "silu"}

#: Flemme ``parameterization`` -> smp_like ``prediction_type``.
PARAMETERIZATIONS = {"epsilon": "epsilon", "velocity": "v_prediction", "start": "sample"}

# ------------------------------------------------------------------------------------------------- keys read

TOP_KEYS = (
    "mode", "model", "loader", "val_loader", "test_loader", "optimizer", "lr_scheduler", "evaluation_metrics",
    "score_metric", "max_epoch", "max_steps", "warmup_epochs", "warmup_epoch", "warmup_start_scale",
    "check_point_dir", "save_after_epochs", "write_after_iters", "write_sample_num", "resume", "pretrained",
    "model_path", "rand_seed", "determinstic", "seg_dir", "recon_dir", "cls_dir", "save_input", "save_target",
    "save_colorized", "eval_batch_num", "num_classes", "last_epoch", "prediction", "pickle_results",
    "pickle_path", "load_pickle_results", "tsne_visualization", "sampler", "eval_gen", "split_files",
    "early_stop_patience", "clip_grad", "ema",
)
MODEL_KEYS = (
    "name", "encoder", "segmentation_losses", "reconstruction_losses", "distribution_loss",
    "classification_losses", "eps_loss", "num_steps", "n_steps", "beta_schedule", "sample_num_steps",
    "num_sample_steps", "classifier_free_guidance", "num_ensemble", "is_supervised", "is_supervising",
    "eps_model", "condition_embedding", "diffusion", "time_channel", "loss_reduction", "parameterization",
    "clipped", "clip_range", "freezed_ae", "ae_path", "ae_model", "template_path", "decoder",
    "inter_mode", "data_form", "latent_scale",
)
DIFFUSION_KEYS = ("name", "num_steps", "n_steps", "sample_num_steps", "num_sample_steps", "beta_schedule",
                  "num_ensemble", "eps_model", "eps_loss", "classifier_free_guidance", "parameterization",
                  "clipped", "clip_range", "loss_reduction", "reconstruction_losses")
EPS_MODEL_KEYS = ("name", "time_channel", "encoder", "condition_embedding", "decoder", "loss_reduction",
                  "inter_mode")
CONDITION_KEYS = ("combine_condition", "merge_timestep_and_condition", "merge_timestep_and_context",
                  "condition_injection", "condition_first", "encoder", "decoder")
CONDITION_ENCODER_KEYS = ("name", "out_channel", "num_classes", "type", "in_channel")
ENCODER_KEYS = (
    "name", "image_size", "in_channel", "out_channel", "patch_channel", "patch_size", "down_channels",
    "up_channels", "middle_channels", "final_channels", "building_block", "normalization", "num_norm_groups",
    "activation", "down_attens", "up_attens", "middle_attens", "final_attens", "dense_channels",
    "decoder_dense_channels", "num_blocks", "window_size", "abs_pos_embedding", "scan_mode", "flip_scan",
    "channel_attention", "shape_scaling", "dropout", "drop_path", "atten_dropout", "kernel_size", "depthwise",
    "dsample_function", "usample_function", "cn_order", "num_heads", "d_k", "qkv_bias", "qk_scale",
    "down_num_heads", "middle_num_heads", "up_num_heads", "final_num_heads", "mlp_hidden_ratio",
    "mlp_hidden_ratios", "last_activation", "return_features", "z_count", "state_channel", "conv_kernel_size",
    "inner_factor", "dt_min", "dt_max", "dt_init_floor", "dt_rank", "dt_init", "dt_scale", "conv_bias", "bias",
    "head_channel", "chunk_size", "learnable_init_states", "time_injection", "condition_injection",
    "condition_first", "time_channel", "decoder_in_channel", "skip_connection", "fusion",
)
LOADER_KEYS = ("dataset", "data_path_list", "data_path", "data_suffix_list", "label_suffix_list", "batch_size",
               "num_workers", "shuffle", "drop_last", "data_transforms", "label_transforms", "target_transforms",
               "class_label_transforms", "mode", "pin_memory")
DATASET_KEYS = ("name", "data_path", "data_dir", "label_dir", "target_dir", "data_suffix", "label_suffix",
                "target_suffix", "dim", "crop_nonzero", "data_combine", "label_combine", "cls_label",
                "lazy_loading", "slice_builder", "mode")
LOSS_KEYS = ("name", "weight", "normalization", "reduction", "ignore_index", "channel_dim", "smooth")
SCORE_KEYS = ("name", "higher_is_better")
SAMPLER_KEYS = ("name", "num_sample_steps", "clipped", "clip_range", "rand_seed")
EVAL_GEN_KEYS = ("gen_dir", "random_sample_num", "interpolation", "interpolation_num")
