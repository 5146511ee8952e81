using Microsoft.ML.Hazy.Heads;
using Microsoft.ML.Hazy.Training;
using static TorchSharp.torch;

namespace Microsoft.ML.Hazy.Sequence;

/// <summary>
/// Scores a live stream (a sensor, telemetry) one time step or one chunk at a time with a trained causal
/// sequence model. Each layer runs in its recurrent view, x_k = Ā x_{k−1} + B̄ u_k for S4D, so the state is
/// O(H·N) per layer whatever the stream's length, and after k steps the score equals the model's score of
/// the first k steps as a whole sequence.
/// </summary>
/// <remarks>
/// The score is what the model's <c>Score</c> column holds: class probabilities (multiclass), the logit
/// (binary) or the prediction (regression). It uses the trained TorchSharp network: a model loaded from a file
/// saved without weights cannot stream; one saved with <c>includeWeights: true</c> and loaded with
/// <c>mlContext.Hazy().LoadModel</c> can. Not thread-safe: use one predictor per stream.
/// </remarks>
public sealed class SequenceStreamingPredictor : IDisposable
{
    private readonly SequenceNetwork _network;
    private readonly OutputHead _head;
    private SequenceStreamState _state;
    private float[]? _lastScore;

    /// <summary>Starts an empty stream for <paramref name="model"/>.</summary>
    /// <param name="model">A model trained by <see cref="SequenceTrainer"/> without <see cref="SequenceTrainer.Options.Bidirectional"/>.</param>
    /// <exception cref="ArgumentException">The model is not a sequence model.</exception>
    /// <exception cref="NotSupportedException">The model is bidirectional, or its layers have no recurrent view.</exception>
    public SequenceStreamingPredictor(HazyPredictionTransformer model)
    {
        ArgumentNullException.ThrowIfNull(model);
        _network = model.Network as SequenceNetwork
            ?? throw new ArgumentException($"Streaming needs a model trained by {nameof(SequenceTrainer)}; this one has a {model.Network.GetType().Name}.", nameof(model));
        _head = model.Head;
        _network.eval();
        _state = _network.CreateStreamState(1);
    }

    /// <summary>Values per time step.</summary>
    public int Channels => _network.Channels;

    /// <summary>Time steps consumed since the start or the last <see cref="Reset"/>.</summary>
    public long StepsSeen => _state.Steps;

    /// <summary>Consumes one time step of <see cref="Channels"/> values and returns the score of the stream so far.</summary>
    public float[] Step(ReadOnlySpan<float> timeStep)
    {
        if (timeStep.Length != Channels)
            throw new ArgumentOutOfRangeException(nameof(timeStep), timeStep.Length, $"A time step has {Channels} value(s) (one per channel); got {timeStep.Length}.");
        return Append(timeStep);
    }

    /// <summary>Consumes whole time steps (time-major, a multiple of <see cref="Channels"/> values) and returns the score after the last.</summary>
    /// <remarks>
    /// No values consume nothing and return the score of the stream so far; before any step that is the score of one
    /// all-zero step, which is also how the exported model scores an empty row.
    /// </remarks>
    public float[] Append(ReadOnlySpan<float> timeSteps)
    {
        if (timeSteps.Length % Channels != 0)
            throw new ArgumentOutOfRangeException(nameof(timeSteps), timeSteps.Length, $"Expected a multiple of {Channels} value(s) (whole time steps); got {timeSteps.Length}.");
        if (timeSteps.Length == 0)
            return (_lastScore ??= ZeroStepScore()).ToArray();
        for (int i = 0; i < timeSteps.Length; i++)
        {
            if (!float.IsFinite(timeSteps[i]))
                throw new ArgumentException($"Value {i} of the time steps is {timeSteps[i]}; expected finite values.", nameof(timeSteps));
        }
        var values = timeSteps.ToArray();
        var device = _network.parameters().First().device;
        using var scope = NewDisposeScope();
        using var _ = no_grad();
        var steps = tensor(values, new long[] { values.Length / Channels, 1, Channels }, device: device);
        Tensor output = steps;
        for (long t = 0; t < steps.shape[0]; t++)
            output = _state.Step(steps[t]).Output;
        _lastScore = Score(output);
        return _lastScore.ToArray();
    }

    /// <summary>Forgets the stream: the next step starts a new sequence.</summary>
    public void Reset()
    {
        _state.Dispose();
        _state = _network.CreateStreamState(1);
        _lastScore = null;
    }

    private float[] ZeroStepScore()
    {
        var device = _network.parameters().First().device;
        using var scope = NewDisposeScope();
        using var _ = no_grad();
        using var state = _network.CreateStreamState(1);
        return Score(state.Step(zeros(new long[] { 1, Channels }, device: device)).Output);
    }

    private float[] Score(Tensor output)
    {
        var score = _head.Score(output);
        return score.cpu().to(ScalarType.Float32).data<float>().ToArray();
    }

    /// <summary>Frees the recurrent state (not the model).</summary>
    public void Dispose() => _state.Dispose();
}
