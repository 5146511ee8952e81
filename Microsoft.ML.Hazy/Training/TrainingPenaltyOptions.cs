using Microsoft.ML.Hazy.Data;
using Microsoft.ML.Hazy.Heads;

namespace Microsoft.ML.Hazy.Training;

/// <summary>
/// A change a trainer makes to its supervised loss while it trains (set as <see cref="HazyTrainerOptions.Penalty"/>): a term
/// added to it, such as the mask penalties of <c>Microsoft.ML.Hazy.Robustness.MaskPenaltyOptions</c>, or a reweighting of its
/// rows, such as group DRO (<c>Microsoft.ML.Hazy.Robustness.GroupDroOptions</c>). It may read further columns of the training
/// data; it never changes what the trained model scores or saves.
/// </summary>
/// <remarks>
/// The training core knows only this hook, so the folders that implement penalties depend on <c>Training/</c> and not the
/// reverse. Only this assembly can derive from it.
/// </remarks>
public abstract class TrainingPenaltyOptions
{
    private protected TrainingPenaltyOptions()
    {
    }

    /// <summary>Checks the penalty's own options, throwing an <see cref="ArgumentOutOfRangeException"/> that names the option.</summary>
    internal abstract void Check();

    /// <summary>
    /// The training objective: <paramref name="supervised"/> (the head's loss) with the penalty added. Checks the columns the
    /// penalty reads against <paramref name="schema"/> (the training data's) and returns the batch columns to read them through.
    /// </summary>
    /// <param name="supervised">The objective without the penalty.</param>
    /// <param name="head">The head the network is trained with.</param>
    /// <param name="schema">The training data's schema.</param>
    /// <param name="featureColumn">The feature column.</param>
    /// <param name="featureSize">Values per row of the feature column; 0 when it is variable.</param>
    /// <param name="channels">Values per time step for a sequence trainer; 0 for a flat feature vector.</param>
    internal abstract (ITrainingObjective Objective, IReadOnlyList<BatchColumn> Columns) CreateObjective(
        ITrainingObjective supervised, OutputHead head, DataViewSchema schema, string featureColumn, int featureSize, int channels);
}
