using Microsoft.ML.Hazy.Training;

namespace Microsoft.ML.Hazy.Cnn;

internal sealed partial class CnnNetwork : IPersistableNetwork
{
    /// <summary>The recipe kind of CNNs.</summary>
    public const string RecipeKind = "Cnn";

    /// <inheritdoc/>
    public NetworkRecipe Recipe =>
        NetworkRecipe.Of(RecipeKind, new CnnRecipe(Channels, Height, Width, Filters, KernelSize, Stride, Padding, Dropout, OutputSize));

    /// <summary>A network of the architecture <paramref name="recipe"/> describes, with fresh weights.</summary>
    public static CnnNetwork FromRecipe(NetworkRecipe recipe)
    {
        var r = recipe.Read<CnnRecipe>();
        return new CnnNetwork(r.Channels, r.Height, r.Width, r.Filters, r.KernelSize, r.Stride, r.Padding, r.Dropout, r.OutputSize);
    }

    private sealed record CnnRecipe(int Channels, int Height, int Width, int[] Filters, int KernelSize, int Stride, int Padding, double Dropout, int OutputSize);
}
