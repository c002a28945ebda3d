"""The multiple-choice VQA suite: question generators, benchmarks, loaders, metrics, harness."""
