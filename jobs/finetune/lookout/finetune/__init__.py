"""lookout.finetune: the fine-tuning job a retrain run launches (LoRA SFT with transformers
+ peft). Runs on GPU when present, CPU otherwise; reports progress as Retrain status events."""
