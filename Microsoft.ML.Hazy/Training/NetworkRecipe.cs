using System.Text.Json;
using System.Text.Json.Serialization;

namespace Microsoft.ML.Hazy.Training;

/// <summary>
/// What it takes to build a network's modules again, without its weights: the network kind and its constructor's
/// arguments as JSON. With the weights (a TorchSharp state dict) it restores the network exactly.
/// </summary>
/// <param name="Kind">The network kind, the key of the registry that rebuilds it (<c>Mlp</c>, <c>Cnn</c>, <c>Sequence</c>).</param>
/// <param name="Arguments">The constructor's arguments, a JSON object.</param>
internal sealed record NetworkRecipe(string Kind, string Arguments)
{
    /// <summary>Enums as names, fields included (options classes expose fields), invariant numbers that round-trip.</summary>
    public static readonly JsonSerializerOptions Json = new()
    {
        IncludeFields = true,
        Converters = { new JsonStringEnumConverter() },
    };

    /// <summary>A recipe of <paramref name="kind"/> whose arguments are <paramref name="arguments"/> serialised.</summary>
    public static NetworkRecipe Of<T>(string kind, T arguments) => new(kind, JsonSerializer.Serialize(arguments, Json));

    /// <summary>The arguments, read back as <typeparamref name="T"/>.</summary>
    /// <exception cref="InvalidDataException">The arguments are not a <typeparamref name="T"/>.</exception>
    public T Read<T>() where T : class
    {
        try
        {
            return JsonSerializer.Deserialize<T>(Arguments, Json) ?? throw new InvalidDataException($"The {Kind} network recipe is empty.");
        }
        catch (JsonException e)
        {
            throw new InvalidDataException($"The {Kind} network recipe does not read: {e.Message}", e);
        }
    }
}

/// <summary>
/// A network that can describe how to build itself again (<see cref="NetworkRecipe"/>), so a saved model can carry its
/// weights and a loaded one can be attributed, streamed and trained on.
/// </summary>
internal interface IPersistableNetwork
{
    /// <summary>The recipe of this network's architecture; null when it was built in a way no recipe describes.</summary>
    NetworkRecipe? Recipe { get; }
}
