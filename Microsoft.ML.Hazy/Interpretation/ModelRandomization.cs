using TorchSharp;
using static TorchSharp.torch;

namespace Microsoft.ML.Hazy.Interpretation;

/// <summary>
/// The model-randomisation sanity check (Adebayo et al. 2018): run an attribution while the network's weights are
/// redrawn from their default initialisation, as an untrained model of the same architecture would have them.
/// </summary>
public static class ModelRandomization
{
    /// <summary>
    /// Runs <paramref name="action"/> while every weight of <paramref name="network"/> is random (Kaiming-uniform weights
    /// and uniform biases on ±1/√fan-in, unit norm scales and zero norm shifts; running statistics kept), then restores
    /// the trained weights, also when <paramref name="action"/> throws. Not thread-safe: nothing else may use the network meanwhile.
    /// </summary>
    /// <typeparam name="T">The action's result.</typeparam>
    /// <param name="network">The network; its trained weights are restored afterwards.</param>
    /// <param name="seed">Seed of the random weights.</param>
    /// <param name="action">What to compute with the random weights, e.g. an attribution method on this network.</param>
    public static T WithRandomWeights<T>(nn.Module network, int seed, Func<T> action)
    {
        ArgumentNullException.ThrowIfNull(network);
        ArgumentNullException.ThrowIfNull(action);
        var saved = network.state_dict().ToDictionary(p => p.Key, p => p.Value.detach().clone());
        try
        {
            Randomize(network, seed);
            return action();
        }
        finally
        {
            using (no_grad())
            {
                foreach (var (name, value) in network.state_dict())
                    value.copy_(saved[name]);
            }
            foreach (var t in saved.Values)
                t.Dispose();
        }
    }

    /// <summary>Redraws every parameter as PyTorch's default initialisation does.</summary>
    private static void Randomize(nn.Module network, int seed)
    {
        using var _ = no_grad();
        using var generator = new Generator((ulong)seed);
        foreach (var (_, module) in network.named_modules())
        {
            foreach (var (name, other) in module.named_parameters(recurse: false))
            {
                // Factors of structured layers (e.g. Monarch blocks [nblocks, out, in]) are drawn per row of their last axis.
                if (name is not ("weight" or "bias") && other.dim() >= 2)
                    other.uniform_(-1 / Math.Sqrt(other.shape[^1]), 1 / Math.Sqrt(other.shape[^1]), generator);
            }
            var weight = module.get_parameter("weight");
            var bias = module.get_parameter("bias");
            if (weight is null)
                continue;
            if (weight.dim() >= 2)
            {
                long fanIn = weight.numel() / weight.shape[0];
                double bound = 1 / Math.Sqrt(fanIn);
                // kaiming_uniform_ with a = √5 draws from U(−1/√fan_in, 1/√fan_in), as do the biases.
                weight.uniform_(-bound, bound, generator);
                bias?.uniform_(-bound, bound, generator);
            }
            else
            {
                using var one = 1.0.ToScalar();
                weight.fill_(one);
                bias?.zero_();
            }
        }
    }
}
