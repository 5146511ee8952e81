using Microsoft.ML.Hazy.Training;

namespace Microsoft.ML.Hazy.Mlp;

internal sealed partial class MlpNetwork : IPersistableNetwork
{
    /// <summary>The recipe kind of MLPs, dense or with Monarch hidden layers.</summary>
    public const string RecipeKind = "Mlp";

    /// <inheritdoc/>
    public NetworkRecipe Recipe => NetworkRecipe.Of(RecipeKind, new MlpRecipe(InputSize, Hidden, OutputSize, Activation, Dropout, LayerNorm, MonarchBlocks));

    /// <summary>A network of the architecture <paramref name="recipe"/> describes, with fresh weights.</summary>
    public static MlpNetwork FromRecipe(NetworkRecipe recipe)
    {
        var r = recipe.Read<MlpRecipe>();
        return new MlpNetwork(r.InputSize, r.Hidden, r.OutputSize, r.Activation, r.Dropout, r.LayerNorm, r.MonarchBlocks);
    }

    private sealed record MlpRecipe(int InputSize, int[] Hidden, int OutputSize, MlpActivation Activation, double Dropout, bool LayerNorm, int MonarchBlocks);
}
