namespace Microsoft.ML.Hazy.Training;

/// <summary>
/// How a trainer reads its feature column as a sequence: time-major steps of <see cref="Channels"/> values,
/// of one length (a known-size vector) or of variable length (a vector of unknown size).
/// </summary>
/// <param name="Channels">Values per time step.</param>
/// <param name="MaximumLength">For variable-length data, the most time steps the exported model accepts; 0 takes the longest training row.</param>
/// <param name="TrainingBytes">
/// The estimated memory of one training step of (rows, time steps), checked against the memory available before the first
/// step (<see cref="MemoryBudget"/>); null skips the check.
/// </param>
internal sealed record SequenceInput(int Channels, int MaximumLength, Func<long, long, double>? TrainingBytes = null);
