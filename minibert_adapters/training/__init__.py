"""Fine-tuning: the loop (`loop`: modes, the optimizer and schedule, resumable training), run settings
(`settings`), run folders and locks (`checkpoints`), the GLUE readers (`data`) and the metrics (`metrics`)."""
