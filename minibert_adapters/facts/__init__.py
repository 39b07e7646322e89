"""The paper's three facts on a real BERT (`check`: count, identity at init, gradients only where they belong) and
whether an init is the distribution its config claims (`init_stats`)."""
