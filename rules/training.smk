# Training: survival baselines (CoxPH, DeepSurv, DeepHit on clinical / text / image / both).
