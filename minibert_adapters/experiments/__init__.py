"""The paper's experiments: grids of `minibert train` runs (`grid`), their report and figures (`report`,
`figures`), and the layer ablation of a trained adapter (`ablation`)."""
