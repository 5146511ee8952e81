using static TorchSharp.torch;

namespace Microsoft.ML.Hazy.Interpretation;

/// <summary>
/// Scores rows with a TorchSharp network taking [B, D] float rows and returning [B, K] outputs (logits) or [B]:
/// in evaluation mode, without gradients, in batches, on the device of the network's parameters.
/// The network's training flag is restored after each call.
/// </summary>
public sealed class TorchScoreFunction : IScoreFunction
{
    private readonly nn.Module<Tensor, Tensor> _module;
    private readonly Device _device;
    private readonly int _batchSize;

    /// <summary>Wraps <paramref name="module"/>.</summary>
    /// <param name="module">The network: [B, <paramref name="featureSize"/>] → [B, K] or [B].</param>
    /// <param name="featureSize">Values per row.</param>
    /// <param name="outputCount">Outputs per row; null runs one zero row through the network to find it.</param>
    /// <param name="batchSize">Rows per forward pass.</param>
    public TorchScoreFunction(nn.Module<Tensor, Tensor> module, int featureSize, int? outputCount = null, int batchSize = 1024)
    {
        ArgumentNullException.ThrowIfNull(module);
        AttributionChecks.Positive(featureSize, nameof(featureSize));
        AttributionChecks.Positive(batchSize, nameof(batchSize));
        _module = module;
        _batchSize = batchSize;
        _device = module.parameters().Select(p => p.device).FirstOrDefault() ?? module.buffers().Select(b => b.device).FirstOrDefault() ?? CPU;
        FeatureSize = featureSize;
        if (outputCount is int k)
        {
            AttributionChecks.Positive(k, nameof(outputCount));
            OutputCount = k;
        }
        else
            OutputCount = Score(new float[featureSize], 1).Length;
    }

    /// <inheritdoc/>
    public int FeatureSize { get; }

    /// <inheritdoc/>
    public int OutputCount { get; private set; }

    /// <inheritdoc/>
    public float[] Score(ReadOnlySpan<float> rows, int count)
    {
        AttributionChecks.Rows(rows.Length, count, FeatureSize, nameof(rows));
        int d = FeatureSize;
        float[]? result = OutputCount == 0 ? null : new float[count * OutputCount];
        bool training = _module.training;
        _module.eval();
        try
        {
            using var _ = no_grad();
            var chunk = new float[Math.Min(count, _batchSize) * d];
            for (int start = 0; start < count; start += _batchSize)
            {
                using var scope = NewDisposeScope();
                int n = Math.Min(_batchSize, count - start);
                rows.Slice(start * d, n * d).CopyTo(chunk);
                var input = tensor(chunk, [chunk.Length / d, d]).narrow(0, 0, n).to(_device);
                var output = _module.forward(input).to(ScalarType.Float32).cpu().contiguous();
                long k = output.dim() == 1 ? 1 : output.numel() / Math.Max(1, output.shape[0]);
                if (output.dim() > 2 || output.shape[0] != n)
                    throw new InvalidOperationException($"The network returned shape [{string.Join(", ", output.shape)}] for {n} rows; expected [{n}, K] or [{n}].");
                if (result is null)
                {
                    OutputCount = (int)k;
                    result = new float[count * OutputCount];
                }
                else if (k != OutputCount)
                    throw new InvalidOperationException($"The network returned {k} outputs per row; expected {OutputCount}.");
                output.data<float>().CopyTo(result, start * OutputCount);
            }
        }
        finally
        {
            _module.train(training);
        }

        return result ?? [];
    }
}
