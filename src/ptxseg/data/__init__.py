"""Datasets: conversion to the canonical folder, QC, folds."""
