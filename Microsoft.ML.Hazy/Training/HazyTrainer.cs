using Microsoft.ML.Hazy.Heads;
using System.Reflection;
using Microsoft.ML.Hazy.Onnx;
using Microsoft.ML.Runtime;
using TorchSharp;
using static TorchSharp.torch;

namespace Microsoft.ML.Hazy.Training;

/// <summary>
/// What one <c>Fit</c> of a Hazy trainer trains: the options of the run (a copy of the trainer's), the network factory,
/// and the optional network switch, sequence input, pretrained flag, training objective (default: the head's loss) and
/// export (default: the trained network with the trainer's head) that <c>SupervisedTrainer.Fit</c> takes.
/// </summary>
internal sealed record TrainingPlan(
    string ComponentName,
    HazyTrainerOptions Options,
    NetworkFactory CreateNetwork,
    NetworkSwitch? NetworkSwitch = null,
    SequenceInput? Sequence = null,
    bool Pretrained = false,
    ITrainingObjective? Objective = null,
    ScoringExport? Export = null);

/// <summary>
/// The base of every Hazy trainer: it checks the options when the trainer is built, owns <see cref="Kind"/>,
/// <see cref="Fit"/> and <see cref="GetOutputSchema"/>, and honours the options' cancellation token,
/// the <see cref="MLContext"/>'s cancellation and <see cref="HazyTrainerOptions.NumberOfThreads"/>. A trainer contributes
/// only what it trains: its network factory (and, where it has them, a sequence input, a network switch or pretrained weights).
/// </summary>
/// <typeparam name="TOptions">The trainer's options.</typeparam>
/// <remarks>
/// As ML.NET's own trainers do, the trainer registers a host with the <see cref="MLContext"/> when it is built; cancelling
/// that context (AutoML does so to stop a trial) makes the running <see cref="Fit"/> throw
/// <see cref="OperationCanceledException"/> before its next optimizer step. (It is not an ML.NET <c>ITrainerEstimator</c>:
/// that interface's <c>TrainerInfo</c> can only be created inside ML.NET.)
/// </remarks>
public abstract class HazyTrainer<TOptions> : IEstimator<HazyPredictionTransformer>
    where TOptions : HazyTrainerOptions
{
    private readonly IHost _host;
    private readonly Action _checkHost;

    private protected HazyTrainer(HazyEnvironment env, string hostName, TOptions options, PredictionKind kind)
    {
        ArgumentNullException.ThrowIfNull(env);
        ArgumentNullException.ThrowIfNull(options);
        options.Check();
        Environment = env;
        TrainerOptions = options;
        Kind = kind;
        // A fixed seed: registering without one would draw from the context's random stream and change the seeds later
        // Fit calls draw. The host serves only to see the context's cancellation.
        _host = env.Env.Register(hostName, seed: 0);
        _checkHost = HostCancellation.Checker(env.Env, _host);
    }

    /// <summary>The environment of the <see cref="MLContext"/> the trainer came from.</summary>
    private protected HazyEnvironment Environment { get; }

    /// <summary>The options the trainer was built with.</summary>
    private protected TOptions TrainerOptions { get; }

    /// <summary>The task this trainer solves.</summary>
    public PredictionKind Kind { get; }

    /// <summary>The sequence input the output schema is computed with; null for a trainer over a feature vector.</summary>
    private protected virtual SequenceInput? SchemaSequence => null;

    /// <summary>The head the network is trained and validated with: by default the one of <see cref="Kind"/>.</summary>
    private protected virtual OutputHead TrainingHead => OutputHead.For(Kind);

    /// <summary>The head the model is served with when it is not <see cref="TrainingHead"/> (an embedding trained through a classifier).</summary>
    private protected virtual OutputHead? ScoringHead => null;

    /// <summary>
    /// What one <see cref="Fit"/> trains on <paramref name="input"/>, with <paramref name="options"/>, this run's copy of the
    /// trainer's options (so the trainer never changes the caller's object). Checks that need the data go here.
    /// </summary>
    private protected abstract TrainingPlan PlanTraining(IDataView input, TOptions options);

    /// <summary>Trains the network and returns the scoring model.</summary>
    /// <exception cref="ArgumentOutOfRangeException">An option was changed to an invalid value after the trainer was built, or the data does not fit the options.</exception>
    /// <exception cref="OperationCanceledException">The options' token or the <see cref="MLContext"/> was cancelled.</exception>
    public HazyPredictionTransformer Fit(IDataView input)
    {
        ArgumentNullException.ThrowIfNull(input);
        TrainerOptions.Check();
        var run = (TOptions)TrainerOptions.ForRun(_checkHost);
        var plan = PlanTraining(input, run);
        using var threads = TorchThreads.Use(run.NumberOfThreads);
        // Networks this run creates are freed when it fails (a cancelled AutoML trial, say); a finished run hands its
        // network to the returned model, which frees it when disposed.
        var created = new List<nn.Module>();
        NetworkFactory createNetwork = (inputSize, outputSize) => Track(created, plan.CreateNetwork(inputSize, outputSize));
        var networkSwitch = plan.NetworkSwitch is { } sw ? sw with { Convert = n => Track(created, sw.Convert(n)) } : null;
        try
        {
            // The one place a trainer trains: every Hazy trainer goes through this call.
            return SupervisedTrainer.Fit(Environment, plan.ComponentName, plan.Options, TrainingHead, input, createNetwork,
                networkSwitch, plan.Sequence, plan.Pretrained, plan.Objective, plan.Export);
        }
        catch
        {
            foreach (var network in created)
                network.Dispose();
            throw;
        }
    }

    private static T Track<T>(List<nn.Module> created, T network) where T : nn.Module
    {
        created.Add(network);
        return network;
    }

    /// <summary>The output schema, checked against the input columns, before any training.</summary>
    public SchemaShape GetOutputSchema(SchemaShape inputSchema) =>
        SupervisedTrainer.GetOutputSchema(inputSchema, TrainerOptions, TrainingHead, SchemaSequence, ScoringHead);
}

/// <summary>Reads an ML.NET host's cancellation, which ML.NET keeps behind an internal interface.</summary>
internal static class HostCancellation
{
    /// <summary>
    /// A check that throws <see cref="OperationCanceledException"/> once the environment or the trainer's host is cancelled.
    /// <c>MLContext.CancelExecution</c> cancels its environment and every host registered with it; the <see cref="MLContext"/>
    /// object itself does not expose the flag, so its registered host carries it.
    /// </summary>
    public static Action Checker(IHostEnvironment environment, IHost host)
    {
        var flags = new[] { IsCanceled(environment), IsCanceled(host) }.Where(f => f is not null).Cast<Func<bool>>().ToArray();
        return () =>
        {
            foreach (var cancelled in flags)
            {
                if (cancelled())
                    throw new OperationCanceledException("The MLContext was cancelled; training stopped between optimizer steps.");
            }
        };
    }

    /// <summary>ML.NET's <c>ICancelable.IsCanceled</c> of <paramref name="target"/>, or null when it does not implement it.</summary>
    private static Func<bool>? IsCanceled(object target)
    {
        var cancelable = target.GetType().GetInterfaces().FirstOrDefault(i => i.Name == "ICancelable" && i.Namespace == "Microsoft.ML.Runtime");
        var property = cancelable?.GetProperty("IsCanceled", BindingFlags.Instance | BindingFlags.Public | BindingFlags.NonPublic);
        if (property is null || property.PropertyType != typeof(bool))
            return null;
        return () => (bool)property.GetValue(target)!;
    }
}

/// <summary>
/// Sets libtorch's intra-op thread count for a training run and restores it afterwards. The count is process-wide, so
/// overlapping runs share it: the first run to start remembers the previous value and the last one to finish restores it.
/// </summary>
internal static class TorchThreads
{
    private static readonly object Gate = new();
    private static int s_active;
    private static int s_previous;

    /// <summary>Sets <paramref name="threads"/> until the returned scope is disposed; null changes nothing.</summary>
    public static IDisposable? Use(int? threads)
    {
        if (threads is not int n)
            return null;
        lock (Gate)
        {
            if (s_active++ == 0)
                s_previous = torch.get_num_threads();
            torch.set_num_threads(n);
        }
        return new Scope();
    }

    private sealed class Scope : IDisposable
    {
        private int _disposed;

        public void Dispose()
        {
            if (Interlocked.Exchange(ref _disposed, 1) != 0)
                return;
            lock (Gate)
            {
                if (--s_active == 0)
                    torch.set_num_threads(s_previous);
            }
        }
    }
}
