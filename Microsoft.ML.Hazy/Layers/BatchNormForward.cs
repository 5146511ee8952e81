using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Microsoft.ML.Hazy.Layers;

/// <summary>
/// <c>BatchNorm2d.forward</c> without its hazard: TorchSharp's module counts batches with <c>num_batches_tracked.add_(1)</c>,
/// an implicitly created Scalar left to the finalizer, which can free it on another thread while libtorch reads it
/// (wrong numbers or a c10 error that come and go; seen in the contrastive sample). Same computation, disposed scalars.
/// </summary>
internal static class BatchNormForward
{
    public static Tensor Apply(BatchNorm2d norm, Tensor x)
    {
        if (norm.training && norm.num_batches_tracked is { } count)
        {
            using var one = 1.ToScalar();
            using (no_grad())
                count.add_(one, one);
        }
        return nn.functional.batch_norm(x, norm.running_mean, norm.running_var, norm.weight, norm.bias, norm.training, norm.momentum ?? 0.1, norm.eps);
    }

    /// <summary>Runs <paramref name="layers"/> in order, batch normalisation through <see cref="Apply"/>.</summary>
    public static Tensor Sequential(IEnumerable<nn.Module<Tensor, Tensor>> layers, Tensor input)
    {
        using var scope = NewDisposeScope();
        var x = input;
        foreach (var layer in layers)
            x = layer is BatchNorm2d norm ? Apply(norm, x) : layer.forward(x);
        return x.MoveToOuterDisposeScope();
    }
}
