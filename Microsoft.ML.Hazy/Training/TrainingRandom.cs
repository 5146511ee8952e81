using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Microsoft.ML.Hazy.Training;

/// <summary>
/// A module that draws random numbers (initial weights, dropout masks) from a generator its trainer owns rather than
/// from libtorch's process-wide one, so two trainings running at once each get the model they get alone.
/// </summary>
internal interface ISeededModule
{
    /// <summary>Redraws this module's own parameters (not its children's) from their initial distribution.</summary>
    void ResetParameters(Generator generator);

    /// <summary>The generator of training-time draws (dropout); null draws from libtorch's global generator.</summary>
    Generator? Generator { get; set; }
}

/// <summary>Seeds a network from one generator per training run: its initial weights and its dropout masks.</summary>
internal static class TrainingRandom
{
    /// <summary>
    /// PyTorch's default initialisation drawn from <paramref name="generator"/>: Linear and convolution weights and biases
    /// from U(±1/√fan-in) (kaiming_uniform_ with a = √5), norms deterministic, Hazy modules by their own rule.
    /// </summary>
    public static void Initialize(nn.Module network, Generator generator)
    {
        using var _ = no_grad();
        foreach (var (name, module) in WithSelf(network))
        {
            switch (module)
            {
                case ISeededModule seeded:
                    seeded.ResetParameters(generator);
                    break;
                case Linear or Conv1d or Conv2d:
                    var weight = module.get_parameter("weight")!;
                    double bound = 1 / Math.Sqrt(weight.numel() / weight.shape[0]);
                    weight.uniform_(-bound, bound, generator);
                    module.get_parameter("bias")?.uniform_(-bound, bound, generator);
                    break;
                case LayerNorm or BatchNorm1d or BatchNorm2d:
                    break;
                default:
                    if (module.named_parameters(recurse: false).Any())
                        throw new InvalidOperationException(
                            $"The module '{name}' ({module.GetType().Name}) has parameters but no seeded initialisation; implement {nameof(ISeededModule)}.");
                    break;
            }
        }
    }

    private static IEnumerable<(string Name, nn.Module Module)> WithSelf(nn.Module network) =>
        new[] { ("(network)", network) }.Concat(network.named_modules());

    /// <summary>A 63-bit seed drawn from <paramref name="generator"/> (null: libtorch's global generator), e.g. for a kernel's dropout.</summary>
    public static ulong NextSeed(Generator? generator)
    {
        using var seed = randint(long.MaxValue, new long[] { 1 }, ScalarType.Int64, generator: generator);
        return (ulong)seed.item<long>();
    }

    /// <summary>Hands <paramref name="generator"/> to every dropout of <paramref name="network"/>; null hands them libtorch's global one.</summary>
    public static void UseGenerator(nn.Module network, Generator? generator)
    {
        foreach (var (_, module) in WithSelf(network))
        {
            if (module is ISeededModule seeded)
                seeded.Generator = generator;
        }
    }
}
