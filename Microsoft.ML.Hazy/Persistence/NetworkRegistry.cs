using Microsoft.ML.Hazy.Onnx;
using Microsoft.ML.Hazy.Data;
using Microsoft.ML.Hazy.Heads;
using Microsoft.ML.Hazy.Cnn;
using Microsoft.ML.Hazy.Mlp;
using Microsoft.ML.Hazy.Sequence;
using Microsoft.ML.Hazy.Training;
using static TorchSharp.torch;

namespace Microsoft.ML.Hazy.Persistence;

/// <summary>
/// Rebuilds networks from their <see cref="NetworkRecipe"/>, and writes and reads their weights as a TorchSharp state dict
/// (parameters and buffers by name, in registration order: deterministic, and exact on the way back).
/// </summary>
internal static class NetworkRegistry
{
    private static readonly Dictionary<string, Func<NetworkRecipe, nn.Module<Tensor, Tensor>>> _factories = new()
    {
        [MlpNetwork.RecipeKind] = MlpNetwork.FromRecipe,
        [CnnNetwork.RecipeKind] = CnnNetwork.FromRecipe,
        [SequenceNetwork.RecipeKind] = SequenceNetwork.FromRecipe,
    };

    /// <summary>The recipe of <paramref name="network"/>.</summary>
    /// <exception cref="NotSupportedException">The network cannot describe its architecture.</exception>
    public static NetworkRecipe RecipeOf(nn.Module network) =>
        network is IPersistableNetwork { Recipe: { } recipe } && _factories.ContainsKey(recipe.Kind)
            ? recipe
            : throw new NotSupportedException(
                $"The network {network.GetType().Name} cannot be saved with its weights: only the networks of Hazy's trainers (MLP, CNN, sequence) describe their architecture.");

    /// <summary>A network of the architecture <paramref name="recipe"/> describes, with fresh weights.</summary>
    /// <exception cref="InvalidDataException">The recipe names an unknown kind or does not read.</exception>
    public static nn.Module<Tensor, Tensor> Create(NetworkRecipe recipe)
    {
        TorchRuntime.EnsureInitialized();
        return _factories.TryGetValue(recipe.Kind, out var factory)
            ? factory(recipe)
            : throw new InvalidDataException(
                $"The saved network is of kind '{recipe.Kind}'; this version of Microsoft.ML.Hazy rebuilds {string.Join(", ", _factories.Keys)}.");
    }

    /// <summary>The network's state dict in TorchSharp's format (tensors copied to the CPU).</summary>
    public static byte[] Weights(nn.Module network)
    {
        using var memory = new MemoryStream();
        using (var writer = new BinaryWriter(memory, System.Text.Encoding.UTF8, leaveOpen: true))
            network.save(writer);
        return memory.ToArray();
    }

    /// <summary>The network of <paramref name="recipe"/> holding <paramref name="weights"/>, on the CPU, in evaluation mode.</summary>
    /// <exception cref="InvalidDataException">The weights do not fit the recipe's network.</exception>
    public static nn.Module<Tensor, Tensor> Restore(NetworkRecipe recipe, byte[] weights, string source)
    {
        var network = Create(recipe);
        try
        {
            using var reader = new BinaryReader(new MemoryStream(weights, writable: false));
            network.load(reader, strict: true);
            if (reader.BaseStream.Position != weights.Length)
                throw new InvalidDataException($"{weights.Length - reader.BaseStream.Position} bytes follow the state dict.");
        }
        catch (Exception e) when (e is ArgumentException or InvalidDataException or EndOfStreamException or IOException)
        {
            network.Dispose();
            throw new InvalidDataException($"{source}: the weights do not fit the saved {recipe.Kind} network ({e.Message}).", e);
        }
        network.eval();
        return network;
    }

    /// <summary>An independent copy of <paramref name="network"/> (same recipe, same weights), on the CPU.</summary>
    public static nn.Module<Tensor, Tensor> Clone(nn.Module network) => Restore(RecipeOf(network), Weights(network), "copy of " + network.GetType().Name);
}
